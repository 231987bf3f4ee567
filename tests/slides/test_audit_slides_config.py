"""Audit of the slides options (`slides.config`): a tile resolution is required (mpp or magnification), and each
bound refuses the first value past it with the option named, while the value at an inclusive bound is accepted."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError


def test_a_tile_resolution_is_required_either_way():
    with pytest.raises(ConfigError, match="set slides.mpp or slides.magnification"):
        load_config(None, ["slides.mpp=null"])
    cfg = load_config(None, ["slides.mpp=null", "slides.magnification=20"]).slides
    assert (cfg.mpp, cfg.magnification) == (None, 20.0)


@pytest.mark.parametrize("option,refused,accepted", [
    ("sampling.overlap", "0.95", "0.9"),
    ("sampling.min_distance", "0", "0.01"),
    ("sampling.min_mask_fraction", "1.01", "1.0"),
    ("sampling.max_tiles_per_slide", "0", "1"),
    ("sampling.seed", "-1", "0"),
    ("tile_size", "15", "16"),
    ("stage_jpeg_quality", "101", "100"),
    ("stage_jpeg_quality", "0", "1"),
    ("workers", "0", "1"),
    ("mpp", "0", "0.01"),
    ("assume_mpp", "0", "0.01"),
    ("tissue.thumbnail_mpp", "0", "0.5"),
    ("tissue.threshold", "-0.1", "0"),
    ("qc.min_tissue_fraction", "1.5", "1"),
    ("qc.max_pen_fraction", "-0.01", "0"),
    ("stain.method", "vahadane", "reinhard"),
    ("sampling.mode", "hexagonal", "random"),
    ("tissue.channel", "hue", "optical_density"),
])
def test_each_bound_refuses_the_value_past_it_and_keeps_the_one_at_it(option, refused, accepted):
    with pytest.raises(ConfigError, match=f"slides.{option}"):
        load_config(None, [f"slides.{option}={refused}"])
    cfg = load_config(None, [f"slides.{option}={accepted}"]).slides
    section, _, name = option.rpartition(".")
    value = getattr(getattr(cfg, section) if section else cfg, name)
    assert str(value) == accepted or float(value) == float(accepted)


def test_no_cap_is_allowed_and_the_documented_defaults_hold():
    assert load_config(None, ["slides.sampling.max_tiles_per_slide=null"]).slides.sampling.max_tiles_per_slide is None
    s = load_config(None, []).slides
    assert (s.mpp, s.tile_size, s.sampling.mode, s.sampling.max_tiles_per_slide, s.stain.method, s.workers) == (
        0.5, 256, "grid", 200, "none", 1)
