"""A corrected mask (`--mask-dir`) is read the way QuPath means its objects: only annotations count (detections,
cells and tiles are not tissue), a `Tissue` classification picks the tissue, and `Ignore*` (or another exclusion
class) is cut out of it. Every geometry used to count as tissue, so tiles were taken inside an `Ignore*` region
and at a detection's box."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.slides.geojson import read_geojson, to_geojson
from mmlnb_dist.slides.tissue import rasterize

SIDE = 1024
TILE = 128  # level-0 pixels at 0.5 um/px: an 8 x 8 grid on the slide


def _box(x0, y0, x1, y1):
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _feature(geometry, cls=None, object_type="annotation", where="properties"):
    props = {} if cls is None else {"classification": cls}
    feature = {"type": "Feature", "geometry": geometry, "properties": props}
    if object_type is not None:
        (props if where == "properties" else feature)["objectType"] = object_type
    return feature


# Tissue: the top half; Ignore* cuts its top-left quarter; an unclassified annotation (bottom left) and a
# detection (bottom right) are not tissue while Tissue-classified annotations exist.
MASK = {"type": "FeatureCollection", "features": [
    _feature(_box(0, 0, 1024, 512), {"name": "Tissue", "color": [0, 160, 0]}),
    _feature(_box(0, 0, 512, 256), {"name": "Ignore*", "color": [180, 180, 180]}),
    _feature(_box(0, 768, 256, 1024)),
    _feature(_box(768, 768, 1024, 1024), {"name": "Tissue"}, object_type="detection"),
]}


def _raster(polygons, side=64, scale=16.0):
    return rasterize(polygons, (side, side), scale)


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "m.geojson"
    path.write_text(json.dumps(data))
    return path


def test_tissue_minus_ignore_only_annotations(tmp_path):
    raster = _raster(read_geojson(_write(tmp_path, MASK)))
    expected = np.zeros((64, 64), bool)
    expected[:32, :] = True  # the Tissue rectangle (16 level-0 px per mask pixel)
    expected[:16, :32] = False  # minus Ignore*
    # one-pixel tolerance at the edges (rounding of boundary pixels), none inside the regions
    assert raster[2:30, 34:62].all() and raster[18:30, 2:30].all()
    assert not raster[:14, :30].any(), "tissue inside the Ignore* region"
    assert not raster[34:, :].any(), "an unclassified annotation or a detection counted as tissue"
    assert abs(int(raster.sum()) - int(expected.sum())) <= 2 * 64 + 2 * 32


def test_unclassified_annotations_are_tissue_when_no_tissue_class(tmp_path):
    data = {"type": "FeatureCollection", "features": [
        _feature(_box(0, 0, 512, 512), object_type=None),  # another tool: no objectType, no class
        _feature(_box(256, 256, 512, 512), "Ignore*"),  # classification as a plain string (older files)
        _feature(_box(600, 0, 900, 300), {"name": "Other"}, object_type="cell", where="feature"),
        {**_feature(_box(600, 600, 900, 900), object_type=None), "id": "PathDetectionObject"},  # QuPath 0.2
    ]}
    raster = _raster(read_geojson(_write(tmp_path, data)))
    assert raster[2:14, 2:30].all() and raster[18:30, 2:14].all()
    assert not raster[18:30, 18:30].any(), "the Ignore* region (class given as a string) is tissue"
    assert not raster[:, 34:].any(), "a cell or detection object counted as tissue"


def test_ignore_region_crossing_the_tissue_edge_and_round_trip(tmp_path):
    data = {"type": "FeatureCollection", "features": [
        _feature(_box(0, 0, 512, 512), {"name": "Tissue"}),
        _feature(_box(512, 0, 1024, 512), {"name": "Tissue"}),
        _feature(_box(384, 128, 640, 384), {"name": "Ignore*"}),  # across both tissue rectangles' edges
    ]}
    polygons = read_geojson(_write(tmp_path, data))
    raster = _raster(polygons)
    assert not raster[9:23, 25:39].any()
    assert raster[2:30, 2:22].all() and raster[2:30, 42:62].all()
    # the mask slides tile writes for QuPath reads back to the same tissue: exclusions as Ignore* annotations
    again = read_geojson(_write(tmp_path, to_geojson(polygons, "s")))
    assert np.array_equal(_raster(again), raster)
    classes = [f["properties"]["classification"]["name"] for f in to_geojson(polygons, "s")["features"]]
    assert sorted(classes) == ["Ignore*", "Tissue", "Tissue"]


def test_counts_per_kind_are_logged(tmp_path, caplog):
    path = _write(tmp_path, MASK)
    with caplog.at_level(logging.INFO, logger="mmlnb_dist.slides.geojson"):
        read_geojson(path)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert str(path) in text
    for part in ("1 Tissue", "1 exclusion", "1 unclassified", "1 detection"):
        assert part in text, text


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("classes")
    write_synthetic_slide(folder / "s-0.tif", "UD", width=SIDE, height=SIDE, pool_size=3, downsamples=(1, 4),
                          seed=1)
    (folder / "labels.csv").write_text("slide_id,label\ns-0,UD\n")
    return folder


def test_tiles_avoid_ignore_regions_and_detections(slide, tmp_path):
    from mmlnb_dist.slides.tiler import tile_slides

    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "s-0.geojson").write_text(json.dumps(MASK))
    # QC off and no cap: every candidate the mask allows is kept, so the kept tiles are the mask's grid cells
    cfg = load_config(None, [f"slides.mask_dir={masks}", f"slides.tile_size={TILE}", "slides.qc_pictures=false",
                             "slides.sampling.max_tiles_per_slide=null", "slides.qc.min_tissue_fraction=0",
                             "slides.qc.min_blur=0", "slides.qc.min_contrast=0", "slides.qc.max_pen_fraction=1",
                             "data.build.image_size=32"])
    out = tmp_path / "out"
    report = tile_slides(cfg.slides, cfg.data.build, slide, slide / "labels.csv", out, cfg.data.classes,
                         progress=False)
    assert [r["status"] for r in report.results] == ["ok"], report.results
    rows = (tmp_path / "out.work" / "slides" / "s-0" / "tiles.jsonl").read_text().splitlines()
    kept = {(json.loads(r)["meta"]["x"], json.loads(r)["meta"]["y"]) for r in rows}
    expected = {(x, y) for x in range(0, SIDE, TILE) for y in range(0, 512, TILE) if not (x < 512 and y < 256)}
    assert kept == expected, (sorted(kept - expected), sorted(expected - kept))


def test_the_exclusion_holes_warning_reaches_the_driver(slide, tmp_path, caplog):
    """It was logged inside the pool or Ray worker, where nobody sees it; the slide's result now carries it and
    the driver logs it (once)."""
    from mmlnb_dist.slides.tiler import tile_slides

    ring = [[0, 0], [512, 0], [512, 256], [0, 256], [0, 0]]
    hole = [[100, 100], [200, 100], [200, 200], [100, 200], [100, 100]]
    data = {"type": "FeatureCollection", "features": [
        _feature(_box(0, 0, 1024, 512), {"name": "Tissue"}),
        _feature({"type": "Polygon", "coordinates": [ring, hole]}, {"name": "Ignore*"})]}
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "s-0.geojson").write_text(json.dumps(data))
    cfg = load_config(None, [f"slides.mask_dir={masks}", f"slides.tile_size={TILE}", "slides.qc_pictures=false",
                             "slides.sampling.max_tiles_per_slide=2", "data.build.image_size=32"])
    with caplog.at_level(logging.WARNING):
        report = tile_slides(cfg.slides, cfg.data.build, slide, slide / "labels.csv", tmp_path / "out",
                             cfg.data.classes, progress=False)
    (result,) = report.results
    assert any("holes in exclusion annotations" in w for w in result.get("warnings", ())), result
    logged = [r for r in caplog.records if "holes in exclusion annotations" in r.getMessage()]
    assert [r.name for r in logged] == ["mmlnb_dist.slides.tiler"], logged
    assert "s-0" in logged[0].getMessage()
