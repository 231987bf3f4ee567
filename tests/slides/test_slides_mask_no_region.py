"""A slide whose corrected mask (`--mask-dir`) holds no region (an empty FeatureCollection, points only) or whose
regions all lie outside the slide (a mask of another slide, coordinates not at level 0) says so, naming the mask
file and the slide's size: it used to read `no tissue found` / `no tile fits inside the tissue`, as if tissue
detection had failed on the slide."""
from __future__ import annotations

import csv
import json

import pytest

from support.slides import SIDE, tile as _tile, two_slides

@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    return two_slides(tmp_path_factory.mktemp("wsi"))


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
