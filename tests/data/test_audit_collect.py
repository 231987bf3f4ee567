"""Audit of `collect_samples` (mutation audit): empty cells of a patches CSV are no value (not an empty text or an
empty slide id), and a descriptions file given by the user wins over the `descriptions.jsonl` beside the inputs."""
from __future__ import annotations

import json

from support.shards import CLASSES, write_patch_folder

from mmlnb_dist.data.build import build_shards
from mmlnb_dist.data.collect import collect_samples
from mmlnb_dist.data.config import BuildConfig


def test_empty_description_and_slide_id_cells_are_no_description_and_no_slide(tmp_path):
    """An empty slide id cell read as the slide "" put every such patch on one slide (the split grouped them), and
    an empty description cell stored an empty text and marked the shard set as described."""
    write_patch_folder(tmp_path, per_class=2, size=16)
    rows = [f"{c}/{c}_00{i}.png,{c},{'' if i else 'S' + c},{'' if i else 'text ' + c}" for c in CLASSES
            for i in range(2)]
    (tmp_path / "list.csv").write_text("\n".join(["path,label,slide_id,description", *rows]) + "\n")
    samples = collect_samples(tmp_path / "list.csv", CLASSES)
    got = {s.meta["file"]: (s.slide_id, s.description) for s in samples}
    assert got == {f"{c}/{c}_00{i}.png": ((None, None) if i else (f"S{c}", f"text {c}")) for c in CLASSES
                   for i in range(2)}
    only_empty = [s for s in samples if s.description is None]
    manifest = build_shards(only_empty, tmp_path / "out", BuildConfig(image_format="png", image_size=16,
                                                                      val_fraction=0.0), CLASSES, progress=False)
    assert manifest["has_descriptions"] is False


def test_a_descriptions_file_given_wins_over_the_one_beside_the_inputs(tmp_path):
    src = write_patch_folder(tmp_path / "src", per_class=1, size=16)
    files = [f"{c}/{c}_000.png" for c in CLASSES]
    (src / "descriptions.jsonl").write_text("".join(json.dumps({"file": f, "description": "beside"}) + "\n"
                                                    for f in files))
    (tmp_path / "mine.jsonl").write_text("".join(json.dumps({"file": f, "description": "given"}) + "\n"
                                                 for f in files))
    assert [s.description for s in collect_samples(src, CLASSES)] == ["beside"] * 3
    assert [s.description for s in collect_samples(src, CLASSES, descriptions=tmp_path / "mine.jsonl")] == \
        ["given"] * 3
