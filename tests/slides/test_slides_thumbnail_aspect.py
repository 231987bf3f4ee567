"""The tissue mask maps thumbnail rows to level 0 with the thumbnail's one scale, the level-0 width over its
width. The thumbnail's height was rounded on its own (h0 / 16 at 8 um/px on a 0.5 um/px scan), so its rows were
another scale than its columns: on a tall slide (a needle biopsy, a strip of cores) the mask, the tiles' positions
and the exported GeoJSON slid down by several thumbnail pixels towards its bottom (glass tiles below the tissue,
tissue lost above it). The thumbnail now has the same level-0 scale along both axes."""
from __future__ import annotations

import numpy as np

from mmlnb_dist.config import load_config
from mmlnb_dist.slides.reader import SlideReader
from mmlnb_dist.slides.slide_task import slide_mask


def test_a_tall_slide_s_mask_lies_on_its_tissue(tmp_path):
    import tifffile

    path = tmp_path / "tall.tif"
    img = np.full((6000, 1000, 3), 240, np.uint8)
    rng = np.random.default_rng(0)
    img[4000:5600, 200:800] = np.clip(np.array([200, 100, 180]) + rng.normal(0, 8, (1600, 600, 3)), 0, 255)
    tifffile.imwrite(path, img, tile=(256, 256), photometric="rgb", resolution=(1e4 / 0.5, 1e4 / 0.5),
                     resolutionunit="CENTIMETER")
    cfg = load_config(None, []).slides
    with SlideReader(path) as reader:
        thumb, mask = slide_mask(reader, cfg)
    assert abs(thumb.shape[0] * mask.scale - 6000) <= mask.scale / 2, (thumb.shape, mask.scale)  # rows cover the slide
    (poly,) = mask.polygons
    top, bottom = poly.outer[:, 1].min(), poly.outer[:, 1].max()
    left, right = poly.outer[:, 0].min(), poly.outer[:, 0].max()
    # within one thumbnail pixel (16 level-0 pixels) of every edge, as docs/slides.md section 3 says
    for got, want in ((top, 4000), (bottom, 5600), (left, 200), (right, 800)):
        assert abs(got - want) <= mask.scale, (got, want, mask.scale)
