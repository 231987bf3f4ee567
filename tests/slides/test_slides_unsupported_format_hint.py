"""A .tif that OpenSlide cannot open (an image program's plain TIFF): the failure says why and what to do, not only
OpenSlide's 'Unsupported or missing image file' (which reads as a missing file)."""
from __future__ import annotations

import numpy as np
import pytest

from mmlnb_dist.slides.reader import SlideError, SlideReader


def test_a_plain_image_tiff_is_named_as_not_tiled(tmp_path):
    """A TIFF saved by an image program (stripped, one level) is no slide for OpenSlide: the error says that a
    slide TIFF is tiled and pyramidal, and how to convert it."""
    from PIL import Image

    path = tmp_path / "scan.tif"
    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(path)
    with pytest.raises(SlideError) as err:
        SlideReader(path)
    message = str(err.value)
    assert "scan.tif" in message
    assert "tiled" in message and "pyramid" in message

