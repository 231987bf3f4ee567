"""A slide whose corrected mask (`--mask-dir`) holds no region (an empty FeatureCollection, points only) or whose
regions all lie outside the slide (a mask of another slide, coordinates not at level 0) says so, naming the mask
file and the slide's size: it used to read `no tissue found` / `no tile fits inside the tissue`, as if tissue
detection had failed on the slide."""
from __future__ import annotations

import csv
import json

import pytest

from mmlnb_dist.cli import main

SIDE = 1024
FAST = ["--quiet", "--max-tiles", "2", "data.build.image_size=32", "slides.qc_pictures=false",
        "data.build.val_fraction=0"]


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("wsi")
    for k, label in enumerate(("UD", "PD")):
        write_synthetic_slide(folder / f"{label}-0.tif", label, width=SIDE, height=SIDE, pool_size=3,
                              downsamples=(1, 4), seed=k)
    (folder / "labels.csv").write_text("slide_id,label\nUD-0,UD\nPD-0,PD\n")
    return folder


def _tile(slides, out, *extra):
    return main(["slides", "tile", "--slides", str(slides), "--labels", str(slides / "labels.csv"), "--out",
                 str(out), *FAST, *extra])


def _square(x0, y0, side):
    return [[[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side], [x0, y0]]]


def _masked_results(slides, tmp_path, masks):
    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    for sid, data in masks.items():
        (mask_dir / f"{sid}.geojson").write_text(json.dumps(data))
    _tile(slides, tmp_path / "out", "--mask-dir", str(mask_dir))
    qc = tmp_path / "out" / "qc"  # beside the shards, or in the staging folder when no tile was kept
    with open(qc / "summary.csv" if qc.is_dir() else tmp_path / "out.work" / "qc" / "summary.csv") as f:
        return {r["slide_id"]: r for r in csv.DictReader(f)}


def test_a_mask_with_no_region_or_outside_the_slide_says_so(slides, tmp_path):
    points = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"objectType": "annotation"},
         "geometry": {"type": "Point", "coordinates": [10, 10]}}]}
    outside = {"type": "Polygon", "coordinates": _square(3 * SIDE, 3 * SIDE, 2 * SIDE)}
    rows = _masked_results(slides, tmp_path, {"UD-0": points, "PD-0": outside})
    assert rows["UD-0"]["status"] == "no_tissue"
    assert "UD-0.geojson" in rows["UD-0"]["error"] and "no tissue region" in rows["UD-0"]["error"], rows["UD-0"]
    assert rows["PD-0"]["status"] == "no_tissue"
    error = rows["PD-0"]["error"]
    assert "PD-0.geojson" in error and "outside the slide" in error and f"{SIDE} x {SIDE}" in error, error


def test_an_empty_mask_says_so_and_a_detected_slide_still_reads_no_tissue_found(slides, tmp_path):
    rows = _masked_results(slides, tmp_path, {"UD-0": {"type": "FeatureCollection", "features": []},
                                              "PD-0": {"type": "Polygon", "coordinates": _square(0, 0, SIDE)}})
    assert rows["UD-0"]["status"] == "no_tissue" and "UD-0.geojson" in rows["UD-0"]["error"]
    assert rows["PD-0"]["status"] == "ok"
