"""`vlm.min_pixels` above `vlm.max_pixels` was accepted and inverted the resize (a 56 px image got 16 image tokens,
a 256 px one 4): refused when the config loads, naming both keys and values."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError


def test_min_pixels_above_max_pixels_is_refused_naming_both():
    with pytest.raises(ConfigError) as err:
        load_config("cpu-demo", ["vlm.min_pixels=12544", "vlm.max_pixels=3136"])
    message = str(err.value)
    assert "vlm.min_pixels" in message and "12544" in message and "vlm.max_pixels" in message and "3136" in message


def test_equal_bounds_fix_one_size():
    cfg = load_config("cpu-demo", ["vlm.min_pixels=3136", "vlm.max_pixels=3136"])
    assert cfg.vlm.min_pixels == cfg.vlm.max_pixels == 3136
