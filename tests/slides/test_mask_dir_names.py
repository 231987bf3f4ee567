"""`--mask-dir` reads the corrected mask under the name `slides tile` wrote it. A slide id holding a character a
file key may not ('.', a space: every TCGA id, `TCGA-02-0001-01Z-00-DX1.83fce43e`) was written to
`qc/masks/<id with '-' for '.'>.geojson` but looked up as `<id>.geojson`, so the documented QuPath round trip
(export, edit, re-run with --mask-dir) silently tiled the automatic mask; a mask that matches no slide is named."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.config import load_config

IDS = ("TCGA-02-0001-01Z-00-DX1.83fce43e", "TCGA-02-0002-01Z-00-DX1.9a7bb21c")
WRITTEN = ("TCGA-02-0001-01Z-00-DX1-83fce43e.geojson", "TCGA-02-0002-01Z-00-DX1-9a7bb21c.geojson")
SMALL = ["slides.sampling.max_tiles_per_slide=2", "data.build.image_size=32", "slides.qc_pictures=false"]
# A corrected mask: a square of about one tile inside the tissue (the automatic mask gives these 1024-px
# slides 4 candidate tiles, this one 1).
SQUARE = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {
    "type": "Polygon", "coordinates": [[[264, 264], [520, 264], [520, 520], [264, 520], [264, 264]]]}}]}


@pytest.fixture(scope="module")
def tcga(tmp_path_factory):
    """Two TCGA-named slides, tiled once without masks: (slide folder, candidates per slide, written masks)."""
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("tcga")
    for k, (sid, label) in enumerate(zip(IDS, ("UD", "PD"))):
        write_synthetic_slide(folder / f"{sid}.tif", label, width=1024, height=1024, pool_size=3,
                              downsamples=(1, 4), seed=k)
    (folder / "labels.csv").write_text(f"slide_id,label\n{IDS[0]},UD\n{IDS[1]},PD\n")
    report = _tile(folder, tmp_path_factory.mktemp("first") / "out")
    masks = report.qc_dir / "masks"
    assert sorted(p.name for p in masks.iterdir()) == sorted(WRITTEN)
    return folder, _candidates(report), masks


def _tile(folder: Path, out: Path, mask_dir: Path | None = None):
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = load_config(None, SMALL + ([f"slides.mask_dir={mask_dir}"] if mask_dir else []))
    return tile_slides(cfg.slides, cfg.data.build, folder, folder / "labels.csv", out, cfg.data.classes,
                       progress=False)


def _candidates(report):
    return {r["slide_id"]: r["candidates"] for r in report.results}


def test_an_edited_mask_under_the_name_tile_wrote_is_used(tcga, tmp_path):
    folder, before, written = tcga
    masks = shutil.copytree(written, tmp_path / "masks")
    (masks / WRITTEN[0]).write_text(json.dumps(SQUARE))  # edited in QuPath, saved under the exported name
    after = _candidates(_tile(folder, tmp_path / "out", masks))
    assert 0 < after[IDS[0]] < before[IDS[0]], (before, after)
    assert after[IDS[1]] == before[IDS[1]]  # its exported mask, unchanged, gives the same tiles


def test_a_mask_named_by_the_exact_slide_id_is_used(tcga, tmp_path):
    folder, before, _ = tcga
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / f"{IDS[0]}.geojson").write_text(json.dumps(SQUARE))
    after = _candidates(_tile(folder, tmp_path / "out", masks))
    assert 0 < after[IDS[0]] < before[IDS[0]], (before, after)


def test_masks_that_match_no_slide_are_named_in_a_warning(tcga, tmp_path, caplog):
    folder, _, written = tcga
    masks = shutil.copytree(written, tmp_path / "masks")
    (masks / "TCGA-02-0003-01Z-00-DX1-0c0c0c0c.geojson").write_text(json.dumps(SQUARE))
    (masks / "notes.txt").write_text("not a mask: not named")
    with caplog.at_level("WARNING"):
        _tile(folder, tmp_path / "out", masks)
    unused = [r.getMessage() for r in caplog.records if "match no slide" in r.getMessage()]
    assert len(unused) == 1, caplog.text
    assert "TCGA-02-0003-01Z-00-DX1-0c0c0c0c.geojson" in unused[0] and "1 mask file(s)" in unused[0], unused
    assert WRITTEN[0] not in unused[0] and "notes.txt" not in unused[0], unused


def test_two_different_masks_for_one_slide_are_refused_naming_both(tcga, tmp_path, capsys):
    folder, _, written = tcga
    masks = shutil.copytree(written, tmp_path / "masks")
    (masks / f"{IDS[0]}.geojson").write_text(json.dumps(SQUARE))  # edited copy saved under the exact id
    out = tmp_path / "out"
    code = main(["slides", "tile", "--slides", str(folder), "--labels", str(folder / "labels.csv"), "--out",
                 str(out), "--mask-dir", str(masks), "--quiet", *SMALL])
    err = capsys.readouterr().err
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert IDS[0] in last and f"{IDS[0]}.geojson" in last and WRITTEN[0] in last, last
    assert not out.exists() and not (tmp_path / "out.work").exists()  # refused before any tiling
    # the same bytes under both names are one mask: no question which to use
    shutil.copyfile(written / WRITTEN[0], masks / f"{IDS[0]}.geojson")
    assert main(["slides", "tile", "--slides", str(folder), "--labels", str(folder / "labels.csv"), "--out",
                 str(out), "--mask-dir", str(masks), "--quiet", *SMALL]) == 0, capsys.readouterr().err
