"""Mutation-audit tests for the QC picture: kept tiles blue and rejected tiles red, each box where its tile is on
the (enlarged) thumbnail, and the tissue outline in green."""
from __future__ import annotations

import numpy as np

from mmlnb_dist.slides.report import KEPT_RGB, OUTLINE_RGB, REJECTED_RGB, qc_picture
from mmlnb_dist.slides.tissue import TissueMask, TissuePolygon, rasterize


def test_qc_picture_draws_kept_and_rejected_tiles_where_they_are(tmp_path):
    """A 64-px thumbnail at 16 level-0 px per pixel is enlarged 12x to 768 px (4/3 level-0 px per picture pixel):
    the kept 128-px tile at (0, 0) is a blue 96-px box at (0, 0), the rejected one at (512, 512) a red box at
    (384, 384), and the tissue square 160..480 a green outline at 120..360."""
    import cv2

    outer = np.array([[160, 160], [480, 160], [480, 480], [160, 480]], np.float64)
    polygons = [TissuePolygon(outer)]
    mask = TissueMask(polygons, rasterize(polygons, (64, 64), 16.0), 16.0, 20.0, "saturation")
    thumb = np.full((64, 64, 3), 255, np.uint8)
    path = qc_picture(thumb, mask, [(0, 0, None), (512, 512, "blur")], 128, tmp_path / "qc.png")
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert img.shape == (768, 768, 3)

    def colour(y, x):
        return tuple(int(c) for c in img[y, x])

    assert colour(0, 50) == colour(50, 95) == KEPT_RGB  # the kept box's top and right edges
    assert colour(384, 430) == colour(479, 430) == colour(430, 384) == REJECTED_RGB
    assert colour(50, 50) == colour(430, 430) == (255, 255, 255)  # boxes are outlines
    assert colour(240, 120) == colour(360, 240) == OUTLINE_RGB
    assert colour(240, 240) == (255, 255, 255)
