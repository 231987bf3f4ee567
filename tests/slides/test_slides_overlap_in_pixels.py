"""`slides.sampling.overlap` is a fraction of the tile side; TRIDENT's and other tilers' overlap is in pixels, so a
user types `overlap=32`. The config error says it is a fraction and how to convert, not only 'less than 0.95'."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError


@pytest.mark.parametrize("value", ["32", "1", "128.0"])
def test_an_overlap_in_pixels_is_refused_as_not_a_fraction(value):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"slides.sampling.overlap={value}"])
    message = str(err.value)
    assert "slides.sampling.overlap" in message
    assert "fraction of the tile side" in message and "pixels" in message


def test_a_fraction_is_still_taken():
    assert load_config(None, ["slides.sampling.overlap=0.25"]).slides.sampling.overlap == 0.25
