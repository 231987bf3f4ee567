"""A slide file OpenSlide cannot open says what is wrong with it: empty, not a TIFF at all, or cut short.

Every `.tif` that failed to open was called "an image program's plain TIFF", with a `vips` command to convert it,
and an empty `.svs` was only OpenSlide's "Unsupported or missing image file": a truncated copy or a renamed file
sent the user converting a file that is not there.
"""
from __future__ import annotations

import numpy as np
import pytest

from mmlnb_dist.slides.reader import SlideError, SlideReader


def _error(path) -> str:
    with pytest.raises(SlideError) as err:
        SlideReader(path)
    return str(err.value)


def test_an_empty_slide_file_is_named_empty(tmp_path):
    (tmp_path / "S1.svs").write_bytes(b"")
    message = _error(tmp_path / "S1.svs")
    assert "S1.svs" in message and "empty" in message


def test_a_file_that_is_no_tiff_is_not_called_a_plain_tiff(tmp_path):
    (tmp_path / "S1.tif").write_text("slide_id,label\nS1,UD\n")  # a CSV saved under the slide's name
    message = _error(tmp_path / "S1.tif")
    assert "not a TIFF" in message and "vips" not in message


def test_a_slide_cut_short_is_named_as_cut_short(tmp_path):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    whole = tmp_path / "whole.tif"
    write_synthetic_slide(whole, "UD", width=1024, height=1024, pool_size=3, downsamples=(1, 4), seed=0)
    data = whole.read_bytes()
    (tmp_path / "S1.tif").write_bytes(data[: len(data) // 3])  # an interrupted copy
    message = _error(tmp_path / "S1.tif")
    assert "cut short" in message and "vips" not in message, message


def test_a_plain_tiff_keeps_its_conversion_hint(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(tmp_path / "S1.tif")
    assert "vips tiffsave" in _error(tmp_path / "S1.tif")
