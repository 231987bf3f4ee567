"""`shards verify` on a shard set changed by hand: a manifest entry lacking a field and a renamed shard are each
reported as a problem line with its remedy (they raised a KeyError traceback / were two unrelated lines)."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.data.verify import verify_shards

from support.shards import make_shard_set


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return make_shard_set(tmp_path_factory.mktemp("set"), per_class=2, max_per_shard=3, val_fraction=0.0)


@pytest.mark.parametrize("field", ["file", "num_samples", "class_counts"])
def test_a_manifest_entry_lacking_a_field_is_a_problem_line_not_a_traceback(built, field):
    original = (built / "manifest.json").read_text()
    manifest = json.loads(original)
    first = manifest["splits"]["train"]["shards"][0]
    name = first["file"]
    del first[field]
    (built / "manifest.json").write_text(json.dumps(manifest))
    try:
        problems = verify_shards(built, progress=False).problems
    finally:
        (built / "manifest.json").write_text(original)
    where = "split train shard #0" if field == "file" else name
    assert problems[0] == (f"manifest {where}: field(s) {field} missing or of the wrong type; rebuild the shard set "
                           f"or restore its manifest.json")
    # the other shards are still checked, and found right
    assert not any(p.startswith(manifest["splits"]["train"]["shards"][1]["file"]) for p in problems)
    assert verify_shards(built, progress=False).problems == []


def test_a_renamed_shard_is_named_with_its_new_name_and_the_remedy(built):
    manifest = json.loads((built / "manifest.json").read_text())
    name = manifest["splits"]["train"]["shards"][1]["file"]
    (built / name).rename(built / "copy.tar")
    try:
        problems = verify_shards(built, progress=False).problems
    finally:
        (built / "copy.tar").rename(built / name)
    assert f"{name}: missing, but copy.tar holds its exact bytes (sha256): rename copy.tar back to {name}" in problems
    assert not any(p.startswith("copy.tar") for p in problems)


def test_a_stray_tar_beside_a_missing_shard_is_still_named_as_stray(built):
    manifest = json.loads((built / "manifest.json").read_text())
    name = manifest["splits"]["train"]["shards"][1]["file"]
    (built / name).rename(built / "held.tar")
    (built / "stray.tar").write_bytes(b"\0" * 1024)
    try:
        problems = verify_shards(built, progress=False).problems
    finally:
        (built / "held.tar").rename(built / name)
        (built / "stray.tar").unlink()
    assert ("stray.tar: tar file not listed in the manifest; move it out of the shard folder (a shard of another set?) "
            "or rebuild the set") in problems
    assert f"{name}: missing, but held.tar holds its exact bytes (sha256): rename held.tar back to {name}" in problems


def test_a_multilabel_split_whose_label_counts_were_edited_is_reported_and_the_table_still_prints(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from mmlnb_dist.cli import main
    from mmlnb_dist.data.build import SampleSpec, build_shards
    from mmlnb_dist.data.config import BuildConfig

    vocab, rng, specs = ["fat", "mit", "nec"], np.random.default_rng(0), []
    for i in range(8):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, format="PNG")
        labels = [vocab[i % 3]] + ([vocab[(i + 1) % 3]] if i % 2 else [])
        specs.append(SampleSpec(f"s{i:02d}", labels[0], buf.getvalue(), meta={"labels": labels}))
    build = BuildConfig(max_samples_per_shard=8, val_fraction=0.25, image_format="png", image_size=16, seed=0)
    out = tmp_path / "shards"
    build_shards(specs, out, build, vocab, progress=False)
    assert verify_shards(out, progress=False).problems == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"] == "multilabel"
    right = manifest["splits"]["val"].pop("label_counts")
    manifest["splits"]["train"]["label_counts"]["mit"] += 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    problems = verify_shards(out, progress=False).problems
    assert [p.split(":")[0] for p in problems] == ["split train", "split val"], problems
    shards_say = {c: right.get(c, 0) for c in vocab}
    assert problems[1] == (f"split val: label counts None differ from its shards' {shards_say}; restore manifest.json "
                           f"or rebuild the shard set")
    assert main(["shards", "verify", str(out), "--no-progress"]) == 1  # the label table prints '?', no traceback
