"""A slide with no objective power in its metadata (a generic TIFF, a stripped export) under `--magnification`:
tiled at a guessed 10/M um/px without a word, while a power of 0 or not a number got a warning for the same
guess. It now gets the same note (the slide's warnings, under --magnification only), which names --mpp."""
from __future__ import annotations

import pytest

from mmlnb_dist.slides.reader import objective_power


@pytest.mark.parametrize("properties", [{}, {"openslide.objective-power": ""}])
def test_a_missing_power_is_noted_as_a_guess_naming_mpp(properties):
    power, note = objective_power(properties)
    assert power is None
    assert note is not None and "no objective power" in note and "10/M" in note and "--mpp" in note, note


def test_a_real_power_has_no_note():
    assert objective_power({"openslide.objective-power": "40"}) == (40.0, None)
