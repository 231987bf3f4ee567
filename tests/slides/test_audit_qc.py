"""Mutation-audit tests for the per-tile QC, tissue detection, stain targets, GeoJSON masks and the summary table:
the boundaries users set in `slides.qc.*` / `slides.tissue.*`, the reasons a tile is rejected, and what a
corrected mask means."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.slides.config import TileQCConfig, TissueConfig
from mmlnb_dist.slides.geojson import read_geojson
from mmlnb_dist.slides.qc import rejection_reason, tile_scores
from mmlnb_dist.slides.report import summary_rows, write_summary_csv
from mmlnb_dist.slides.stain import StainNormalizer, StainTargetError, check_stained
from mmlnb_dist.slides.tiler import tile_slides
from mmlnb_dist.slides.tissue import MIN_OTSU_OD, detect_tissue, rasterize, threshold_channel

QC = TileQCConfig(min_tissue_fraction=0.5, min_blur=40.0, min_contrast=12.0, max_pen_fraction=0.05)
GOOD = {"tissue_fraction": 0.9, "blur": 100.0, "contrast": 30.0, "pen_fraction": 0.0}


# ---------------------------------------------------------------------------------------------------------------
# Tile QC
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value", [("tissue_fraction", 0.5), ("blur", 40.0), ("contrast", 12.0),
                                        ("pen_fraction", 0.05)])
def test_a_score_exactly_at_its_threshold_keeps_the_tile(key, value):
    """`min_*` are inclusive minima and `max_pen_fraction` an inclusive maximum (as the config documents)."""
    assert rejection_reason({**GOOD, key: value}, QC) is None


@pytest.mark.parametrize("key, value, reason", [("tissue_fraction", 0.49, "background"), ("blur", 39.9, "blur"),
                                                ("contrast", 11.9, "low_contrast"), ("pen_fraction", 0.06, "pen")])
def test_a_score_past_its_threshold_rejects_with_its_reason(key, value, reason):
    """Just past a threshold the tile is rejected, naming that filter."""
    assert rejection_reason({**GOOD, key: value}, QC) == reason


def test_the_first_failed_filter_is_the_reason_in_reasons_order():
    """A tile failing everything is `background`; with tissue, ink wins over blur, blur over contrast."""
    bad = {"tissue_fraction": 0.0, "blur": 0.0, "contrast": 0.0, "pen_fraction": 1.0}
    assert rejection_reason(bad, QC) == "background"
    assert rejection_reason({**bad, "tissue_fraction": 1.0}, QC) == "pen"
    assert rejection_reason({**bad, "tissue_fraction": 1.0, "pen_fraction": 0.0}, QC) == "blur"


def test_tile_scores_match_a_numpy_reference():
    """Tissue share is strictly above the threshold; black and green-marker pixels count as ink, H&E pink not."""
    import cv2

    rgb = np.full((32, 32, 3), 255, np.uint8)
    rgb[:8] = (25, 25, 25)          # black ink (very dark, unsaturated): 8 rows
    rgb[8:16] = (60, 140, 90)       # green marker, moderately saturated: 8 rows
    rgb[16:24] = (200, 100, 180)    # H&E pink/purple: 8 rows
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    sat = hsv[..., 1]
    threshold = float(sat[20, 0])   # exactly the pink pixels' saturation: they are not above it
    scores = tile_scores(rgb, threshold, "saturation")
    assert scores["tissue_fraction"] == pytest.approx(float((sat > threshold).mean()))
    assert scores["tissue_fraction"] == pytest.approx(8 / 32)  # only the green rows are more saturated
    assert scores["pen_fraction"] == pytest.approx(16 / 32)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert scores["contrast"] == pytest.approx(float(grey.std()))


# ---------------------------------------------------------------------------------------------------------------
# Tissue threshold
# ---------------------------------------------------------------------------------------------------------------
def test_threshold_channel_fixed_floor_and_blank():
    """A configured threshold wins over Otsu; Otsu is floored (saturation and OD scale); a flat thumbnail has none."""
    values = np.concatenate([np.full(500, 2.0), np.full(500, 8.0)]).astype(np.float32)  # Otsu ~5
    assert threshold_channel(values, TissueConfig(threshold=3.5)) == 3.5
    assert threshold_channel(values, TissueConfig(min_otsu_threshold=12.0)) == 12.0
    od = values / 25.0  # Otsu ~0.2, above both floors (12/255 ~0.047 and clean glass's MIN_OTSU_OD) -> Otsu
    t = threshold_channel(od, TissueConfig(channel="optical_density", min_otsu_threshold=12.0))
    assert 0.1 < t < 0.3
    t = threshold_channel(od, TissueConfig(channel="optical_density", min_otsu_threshold=76.5))
    assert t == pytest.approx(0.3)
    # Otsu ~0.05 lies in the noise of clean glass (OD 0.02-0.1): floored above glass
    assert threshold_channel(values / 100.0, TissueConfig(channel="optical_density")) == pytest.approx(MIN_OTSU_OD)
    flat = np.full(100, 7.0, np.float32)
    assert not (flat > threshold_channel(flat, TissueConfig())).any()


def _thumb(boxes, side=64, fill=(200, 100, 180)):
    thumb = np.full((side, side, 3), 245, np.uint8)
    for y0, y1, x0, x1 in boxes:
        thumb[y0:y1, x0:x1] = fill
    return thumb


def test_detect_tissue_keeps_large_regions_and_large_holes():
    """At 8 um/px: a region under `min_area_um2` is dropped; a hole over `min_hole_area_um2` stays a hole."""
    cfg = TissueConfig(threshold=30.0, closing_um=0.0, opening_um=0.0, min_area_um2=64 * 100.0,
                       min_hole_area_um2=64 * 20.0)
    thumb = _thumb([(4, 40, 4, 40), (50, 54, 50, 54)])  # a 36x36 region and a 4x4 speck (16 px < 100 px)
    thumb[14:24, 14:24] = 245  # a 10x10 hole (100 px > 20 px)
    mask = detect_tissue(thumb, 4.0, 2.0, cfg)
    assert len(mask.polygons) == 1 and len(mask.polygons[0].holes) == 1
    expected = np.zeros((64, 64), bool)
    expected[4:40, 4:40] = True
    expected[14:24, 14:24] = False
    assert (mask.raster ^ expected).sum() <= 50  # the hole's outline pixels; the hole itself is 100


def test_detect_tissue_uses_a_strict_threshold():
    """Pixels exactly at a fixed threshold are not tissue (the QC's tissue share uses the same rule)."""
    import cv2

    thumb = _thumb([(8, 56, 8, 56)])
    sat = float(cv2.cvtColor(thumb, cv2.COLOR_RGB2HSV)[30, 30, 1])
    cfg = TissueConfig(threshold=sat, closing_um=0.0, opening_um=0.0, min_area_um2=0.0)
    assert detect_tissue(thumb, 4.0, 2.0, cfg).polygons == []
    assert len(detect_tissue(thumb, 4.0, 2.0, cfg.model_copy(update={"threshold": sat - 1})).polygons) == 1


# ---------------------------------------------------------------------------------------------------------------
# Stain target
# ---------------------------------------------------------------------------------------------------------------
def _stained(n_stained: int, total: int = 100 * 100) -> np.ndarray:
    rgb = np.full((total, 3), 250, np.uint8)
    rgb[:n_stained] = (150, 80, 160)
    return rgb.reshape(100, -1, 3)


def test_check_stained_needs_both_the_share_and_the_pixel_count():
    """At least 1% and 256 pixels stained; a pixel is stained only when every channel is dense enough."""
    check_stained(_stained(256), "t")  # 2.56%: both met
    with pytest.raises(StainTargetError):
        check_stained(_stained(255), "t")  # 2.55% but 255 pixels
    with pytest.raises(StainTargetError):
        check_stained(_stained(300, 100 * 400), "t")  # 300 pixels but 0.75%
    rgb = np.full((100, 100, 3), 250, np.uint8)
    rgb[:50] = (250, 60, 250)  # dense in green only: not H&E stain
    with pytest.raises(StainTargetError):
        check_stained(rgb, "t")


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_an_unchecked_target_from_a_slide_is_checked_by_the_normalizer(method):
    """A slide region used as target (checked=False) is refused when it holds too little stain."""
    with pytest.raises(StainTargetError, match="too little stained"):
        StainNormalizer(method, np.full((64, 64, 3), 250, np.uint8), checked=False)


# ---------------------------------------------------------------------------------------------------------------
# GeoJSON masks
# ---------------------------------------------------------------------------------------------------------------
def _ring(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _write(tmp_path: Path, features) -> Path:
    path = tmp_path / "m.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _feat(rings, cls=None, otype="annotation"):
    props = {"objectType": otype}
    if cls is not None:
        props["classification"] = {"name": cls}
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings}, "properties": props}


def test_polygon_holes_are_read_and_cleared_from_the_raster(tmp_path):
    """A Polygon's second ring is a hole: the tiles' raster has no tissue there."""
    path = _write(tmp_path, [_feat([_ring(0, 0, 640, 640), _ring(160, 160, 480, 480)], "Tissue")])
    (poly,) = read_geojson(path)
    assert len(poly.holes) == 1
    raster = rasterize([poly], (64, 64), 16.0)
    assert raster[5, 5] and not raster[20, 20] and raster[35, 5]
    assert raster[:40, :40].sum() == pytest.approx(40 * 40 - 20 * 20, abs=2 * 40)


def test_class_names_are_matched_without_case(tmp_path):
    """`tissue` is the Tissue class and `IGNORE*` / `Exclude` are exclusions; `Annotation` is an annotation."""
    path = _write(tmp_path, [_feat([_ring(0, 0, 640, 320)], "tissue", otype="Annotation"),
                             _feat([_ring(0, 0, 160, 160)], "IGNORE*"),
                             _feat([_ring(480, 0, 640, 160)], "Exclude"),
                             _feat([_ring(0, 480, 640, 640)])])  # unclassified: not tissue beside a Tissue class
    polys = read_geojson(path)
    raster = rasterize(polys, (40, 40), 16.0)
    assert raster[15, 20] and not raster[5, 5] and not raster[5, 35] and not raster[35, 20]


def test_every_part_of_a_multipolygon_is_tissue(tmp_path):
    """QuPath writes merged annotations as a MultiPolygon: each part is a tissue polygon, with its own holes."""
    multi = {"type": "Feature", "properties": {"objectType": "annotation", "classification": {"name": "Tissue"}},
             "geometry": {"type": "MultiPolygon", "coordinates": [
                 [_ring(0, 0, 320, 320), _ring(80, 80, 240, 240)], [_ring(400, 400, 640, 640)]]}}
    polys = read_geojson(_write(tmp_path, [multi]))
    assert [len(p.holes) for p in polys] == [1, 0]
    raster = rasterize(polys, (40, 40), 16.0)
    assert raster[2, 2] and not raster[10, 10] and raster[30, 30]


def test_rings_of_fewer_than_three_points_are_not_regions(tmp_path):
    """A degenerate hole (two points) leaves the polygon whole; a degenerate outline gives no polygon."""
    path = _write(tmp_path, [_feat([_ring(0, 0, 320, 320), [[10, 10], [20, 20]]]),
                             _feat([[[400, 400], [500, 500]]])])
    (poly,) = read_geojson(path)
    assert poly.holes == []


# ---------------------------------------------------------------------------------------------------------------
# Summary table
# ---------------------------------------------------------------------------------------------------------------
def test_summary_csv_counts_kept_and_each_rejection_reason(tmp_path):
    """summary.csv holds each slide's kept and candidate counts and a count per rejection reason."""
    results = [{"slide_id": "a", "label": "UD", "status": "ok", "candidates": 10, "kept": 4,
                "rejected": {"background": 3, "pen": 1, "blur": 2}, "seconds": 1.234},
               {"slide_id": "b", "label": "PD", "status": "failed", "candidates": 0, "kept": 0, "rejected": {},
                "error": "boom"}]
    path = write_summary_csv(summary_rows(results), tmp_path / "s.csv")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [(r["slide_id"], r["kept"], r["candidates"]) for r in rows] == [("a", "4", "10"), ("b", "0", "0")]
    assert (rows[0]["rejected_background"], rows[0]["rejected_pen"], rows[0]["rejected_blur"],
            rows[0]["rejected_low_contrast"]) == ("3", "1", "2", "0")
    assert rows[0]["seconds"] == "1.23" and rows[1]["error"] == "boom"


def _slide_with_a_whole_mask(tmp_path: Path, slide_id: str, labels: str, **synthetic) -> Path:
    """A 512 px synthetic slide `<slide_id>.tif`, its labels CSV and a mask over all of it; returns the mask folder."""
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    write_synthetic_slide(tmp_path / f"{slide_id}.tif", "UD", width=512, height=512, pool_size=2, downsamples=(1, 4),
                          **synthetic)
    (tmp_path / "labels.csv").write_text(labels)
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / f"{slide_id}.geojson").write_text(json.dumps({"type": "Polygon",
                                                            "coordinates": [_ring(0, 0, 512, 512)]}))
    return masks


def test_a_slide_region_used_as_stain_target_is_checked_before_tiling(tmp_path, monkeypatch):
    """Without slides.stain.target and tiatoolbox, the target is the most-tissue region of the first slide; a
    region with no stain (a mask drawn over glass) is refused before any slide is tiled, not fitted on."""
    import mmlnb_dist.slides.stain as stain

    masks = _slide_with_a_whole_mask(tmp_path, "G", "slide_id,label\nG,UD\n", tissue=False)
    monkeypatch.setattr(stain, "default_target_path", lambda: None)
    cfg = load_config(None, ["slides.stain.method=reinhard", f"slides.mask_dir={masks}", "slides.tile_size=64",
                             "slides.qc_pictures=false"])
    with pytest.raises(StainTargetError, match="too little stained"):
        tile_slides(cfg.slides, cfg.data.build, tmp_path, tmp_path / "labels.csv", tmp_path / "out",
                    cfg.data.classes, progress=False)
    assert not (tmp_path / "out.work" / "slides" / "G").exists()


def test_a_normaliser_output_of_another_shape_keeps_the_tile_unnormalised():
    """A normaliser that gives back a different shape (or NaN) leaves the tile as it was, recorded as failed."""
    norm = StainNormalizer("reinhard", np.tile(np.array([[150, 80, 160], [250, 250, 250]], np.uint8), (64, 32, 1)),
                           checked=True)
    tile = np.full((8, 8, 3), 120, np.uint8)

    class Wrong:
        def __init__(self, out):
            self.out = out

        def normalize(self, rgb):
            return self.out

    norm._norm = Wrong(np.zeros((8, 4, 3)))
    out, used = norm(tile)
    assert used == "reinhard-failed:none" and out is tile
    norm._norm = Wrong(np.full((8, 8, 3), np.nan))
    assert norm(tile)[1] == "reinhard-failed:none"
    norm._norm = Wrong(np.full((8, 8, 3), 300.0))
    out, used = norm(tile)
    assert used == "reinhard" and out.dtype == np.uint8 and (out == 255).all()


def test_tracking_metrics_and_summary_count_the_kept_tiles(tmp_path):
    """The tracking logger gets slides/ok, slides/problems and slides/tiles (kept tiles, not candidates), and
    summary.csv's kept column agrees with the tiles in the shards."""
    masks = _slide_with_a_whole_mask(tmp_path, "S", "slide_id,label\nS,UD\nmissing,PD\n", blur=False)

    class Logger:
        def __init__(self):
            self.metrics = {}

        def log_artifact(self, *args):
            pass

        def log_metrics(self, metrics, step=0):
            self.metrics.update(metrics)

    cfg = load_config(None, [f"slides.mask_dir={masks}", "slides.tile_size=64", "slides.mpp=1.0",
                             "slides.qc_pictures=false", "slides.sampling.max_tiles_per_slide=3",
                             "slides.qc.min_tissue_fraction=0", "slides.qc.min_blur=0", "slides.qc.min_contrast=0",
                             "data.build.image_size=32", "data.build.val_fraction=0"])
    logger = Logger()
    report = tile_slides(cfg.slides, cfg.data.build, tmp_path, tmp_path / "labels.csv", tmp_path / "out",
                         cfg.data.classes, progress=False, logger=logger)
    ok = next(r for r in report.results if r["slide_id"] == "S")
    assert ok["candidates"] > ok["kept"] == 3
    assert logger.metrics == {"slides/ok": 1.0, "slides/problems": 1.0, "slides/tiles": 3.0}
    with open(report.qc_dir / "summary.csv") as f:
        rows = {r["slide_id"]: r for r in csv.DictReader(f)}
    assert (rows["S"]["kept"], rows["missing"]["status"]) == ("3", "missing_slide")
    assert [p["slide_id"] for p in report.problems] == ["missing"]
