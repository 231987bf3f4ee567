"""A stain target too small to fit (a thumbnail-sized crop) is called too small, not short of stained tissue.

Its error said "too little stained tissue ... (64 of 64 pixels stained, 100.0% ...)": every pixel stained, and
yet too little, with nothing saying that the image is too small and how large it must be.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.data.synthetic import render_patch
from mmlnb_dist.slides.stain import StainTargetError, load_rgb


def test_a_small_well_stained_target_is_named_too_small(tmp_path):
    Image.fromarray(render_patch("UD", 128, np.random.default_rng(0))[:12, :12]).save(tmp_path / "crop.png")
    with pytest.raises(StainTargetError) as err:
        load_rgb(tmp_path / "crop.png")
    message = str(err.value)
    assert "crop.png" in message and "too small" in message and "12 x 12" in message, message
    assert "too little stained tissue" not in message


def test_a_large_target_with_little_tissue_still_says_so(tmp_path):
    glass = np.full((256, 256, 3), 245, np.uint8)
    glass[:4, :4] = (150, 60, 140)
    Image.fromarray(glass).save(tmp_path / "glass.png")
    with pytest.raises(StainTargetError, match="too little stained tissue"):
        load_rgb(tmp_path / "glass.png")
