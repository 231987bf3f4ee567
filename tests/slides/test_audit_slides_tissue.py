"""Mutation-audit tests for tissue detection and slide reading at their edges: the optical-density channel's scale,
a hole of exactly the minimum area, a faint stain target refused as unstained (Macenko's own background and
density), the anisotropy tolerance, and the thumbnail's exact level-0 scale."""
from __future__ import annotations

import numpy as np
import pytest

from mmlnb_dist.slides.config import TissueConfig
from mmlnb_dist.slides.reader import SlideError, SlideReader, resolve_mpp
from mmlnb_dist.slides.stain import StainNormalizer, StainTargetError
from mmlnb_dist.slides.tissue import contours_to_polygons, detect_tissue, rasterize


def test_the_optical_density_channel_finds_tissue_on_white_glass():
    """channel=optical_density: OD is -ln((I+1)/256), 0 on white glass, so a stained block is found (Otsu above
    the floor) where it is, and glass is not tissue."""
    thumb = np.full((64, 64, 3), 255, np.uint8)
    thumb[8:40, 16:56] = (200, 100, 180)
    cfg = TissueConfig(channel="optical_density", closing_um=0.0, opening_um=0.0, min_area_um2=0.0)
    mask = detect_tissue(thumb, 4.0, 2.0, cfg)
    expected = np.zeros((64, 64), bool)
    expected[8:40, 16:56] = True
    assert (mask.raster ^ expected).sum() <= 2 * (32 + 40)  # one outline's rounding at most
    od = np.mean(-np.log((np.array([200, 100, 180]) + 1.0) / 256.0))
    assert 0.0 < mask.threshold < od


def test_a_hole_of_exactly_the_minimum_area_stays_a_hole():
    """min_hole_px is inclusive (as min_area_px is): a hole whose area equals it is kept, a larger bound fills it."""
    import cv2

    mask = np.zeros((40, 40), np.uint8)
    mask[4:36, 4:36] = 1
    mask[14:24, 14:24] = 0
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    hole = next(c for c, h in zip(contours, hierarchy[0]) if h[3] != -1)
    area = cv2.contourArea(hole)
    (poly,) = contours_to_polygons(mask, 2.0, min_area_px=0.0, min_hole_px=area)
    assert len(poly.holes) == 1
    assert not rasterize([poly], (40, 40), 2.0)[18, 18]
    (poly,) = contours_to_polygons(mask, 2.0, min_area_px=0.0, min_hole_px=area + 0.5)
    assert poly.holes == []


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_a_faint_grey_target_is_refused_as_unstained(method):
    """Light grey (215) is below Macenko's stained density (OD 0.15 against a 240 background): refused as too
    little stained tissue, not fitted to glass (Reinhard) or failing inside the eigen-solver (Macenko)."""
    with pytest.raises(StainTargetError, match=r"too little stained tissue .*\(0 of 4096 pixels"):
        StainNormalizer(method, np.full((64, 64, 3), 215, np.uint8))


def test_pixels_up_to_ten_percent_from_square_are_accepted_against_the_smaller_size():
    """The 10% tolerance is of the smaller pixel size: 0.5 vs 0.549 is accepted, 0.5 vs 0.5525 is not (10.5%)."""
    mpp, source, _ = resolve_mpp({"openslide.mpp-x": "0.5", "openslide.mpp-y": "0.549"}, None)
    assert mpp == pytest.approx(0.5245) and source == "metadata"
    with pytest.raises(SlideError, match="not square"):
        resolve_mpp({"openslide.mpp-x": "0.5", "openslide.mpp-y": "0.5525"}, None)
    with pytest.raises(SlideError, match="not square"):
        resolve_mpp({"openslide.mpp-x": "0.5525", "openslide.mpp-y": "0.5"}, None)


def test_the_thumbnail_scale_maps_its_pixels_onto_the_whole_slide(tmp_path):
    """A 1000 x 600 slide at 0.5 um/px, thumbnail at 8 um/px: 62 x 37 pixels (1000/16 rounds down), so one
    thumbnail pixel is 1000/62 level-0 pixels, not the 16 asked for (else the mask would end 8 px short), along
    both axes (37 rows: test_slides_thumbnail_aspect.py). A
    thumbnail finer than the scan is never upsampled: it is level 0, one pixel per pixel."""
    import tifffile

    path = tmp_path / "s.tif"
    img = np.full((600, 1000, 3), 230, np.uint8)
    img[100:500, 200:800] = (200, 100, 180)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:  # a two-level pyramid (downsamples 1 and 4)
        for i, ds in enumerate((1, 4)):
            tw.write(np.ascontiguousarray(img[::ds, ::ds]), tile=(256, 256), photometric="rgb", metadata=None,
                     subfiletype=0 if i == 0 else 1, resolution=(1e4 / (0.5 * ds),) * 2, resolutionunit="CENTIMETER")
    with SlideReader(path) as reader:
        thumb, scale = reader.thumbnail(8.0)
        fine, fine_scale = reader.thumbnail(0.25)
    assert fine.shape[:2] == (600, 1000) and fine_scale == 1.0
    assert thumb.shape[:2] == (37, 62)  # rows at the columns' scale: 600 / (1000 / 62) rounds to 37
    assert scale == pytest.approx(1000 / 62) and thumb.shape[1] * scale == pytest.approx(1000)
    assert abs(thumb.shape[0] * scale - 600) <= scale / 2
