"""A slide whose metadata gives the resolution on one axis only is read as square pixels of that size, whichever
axis it is: `openslide.mpp-x` alone already was, `openslide.mpp-y` alone was "no resolution" (tiling refused the
slide unless --assume-mpp replaced a value it had)."""
from __future__ import annotations

import pytest

from mmlnb_dist.slides.reader import resolve_mpp


@pytest.mark.parametrize("key", ["openslide.mpp-x", "openslide.mpp-y"])
def test_one_axis_is_taken_for_both(key):
    assert resolve_mpp({key: "0.2497"}, None) == (pytest.approx(0.2497), "metadata", None)


def test_an_unusable_axis_beside_a_usable_one_is_replaced_by_it():
    assert resolve_mpp({"openslide.mpp-x": "0", "openslide.mpp-y": "0.5"}, None)[:2] == (0.5, "metadata")
    assert resolve_mpp({"openslide.mpp-x": "0.5", "openslide.mpp-y": "nan"}, None)[:2] == (0.5, "metadata")
