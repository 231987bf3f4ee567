"""channel=optical_density on a slide with no tissue: the Otsu floor on that channel was min_otsu_threshold/255
(0.047), below the optical density of clean glass as scanners image it (240-245: 0.04-0.06), so Otsu split the
glass's noise and the whole blank slide became one tissue region (fraction 1.0). The floor now sits above glass,
and a pale stain is still found."""
from __future__ import annotations

import numpy as np
import pytest

from mmlnb_dist.slides.config import TissueConfig
from mmlnb_dist.slides.tissue import detect_tissue

OD = TissueConfig(channel="optical_density")


@pytest.mark.parametrize("glass", [245, 240, 234])
def test_blank_glass_is_no_tissue_on_the_optical_density_channel(glass):
    rng = np.random.default_rng(0)
    thumb = np.clip(glass + rng.normal(0, 3, (200, 300, 3)), 0, 255).astype(np.uint8)
    mask = detect_tissue(thumb, 16.0, 0.5, OD)  # 8 um/px thumbnail
    assert mask.fraction == 0.0 and not mask.polygons, (glass, mask.threshold, mask.fraction)


def test_a_pale_stain_on_glass_is_still_found():
    rng = np.random.default_rng(1)
    thumb = np.clip(242 + rng.normal(0, 3, (200, 300, 3)), 0, 255).astype(np.uint8)
    thumb[50:150, 60:240] = np.clip(np.array([225, 190, 215]) + rng.normal(0, 6, (100, 180, 3)), 0, 255)
    mask = detect_tissue(thumb, 16.0, 0.5, OD)
    expected = np.zeros(mask.raster.shape, bool)
    expected[50:150, 60:240] = True
    assert (mask.raster ^ expected).mean() < 0.01, mask.threshold
