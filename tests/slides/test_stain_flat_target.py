"""A stain target of one flat colour (a colour swatch, a picked H&E tint) has no tissue to fit a normaliser on.

It passed the target checks (stained, coloured): Reinhard then gave every tile the target's spread, none, so
tiles came out as flat squares of one colour, and Macenko saw one stain and turned hematoxylin pink, while the
tiles' meta said they were normalised. It is refused, naming the file, before any slide is tiled.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.data.synthetic import render_patch
from mmlnb_dist.slides.stain import StainNormalizer, StainTargetError, load_rgb


@pytest.fixture
def he():
    return render_patch("UD", 128, np.random.default_rng(0))


def _swatch(noise: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(np.full((128, 128, 3), (180.0, 90.0, 160.0)) + rng.normal(0, noise, (128, 128, 3)) if noise
                   else np.full((128, 128, 3), (180.0, 90.0, 160.0)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("noise", [0.0, 2.0])
def test_a_flat_colour_target_file_is_refused(tmp_path, noise):
    Image.fromarray(_swatch(noise)).save(tmp_path / "pink.png")
    with pytest.raises(StainTargetError, match=r"pink\.png: .*one flat colour"):
        load_rgb(tmp_path / "pink.png")


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_a_flat_region_is_refused_and_a_tissue_target_kept(he, method):
    with pytest.raises(StainTargetError, match="one flat colour"):
        StainNormalizer(method, _swatch())
    out, used = StainNormalizer(method, he)(he)
    assert used == method and out.std() > 10  # the tile keeps its structure
