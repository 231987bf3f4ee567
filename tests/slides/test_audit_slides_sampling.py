"""Mutation-audit tests for candidate sampling at its edges: `min_mask_fraction` 0 still needs some tissue, random
sampling's minimum share is inclusive as the grid's is, and a slide smaller than one tile has no random candidate."""
from __future__ import annotations

import numpy as np

from mmlnb_dist.slides.config import SamplingConfig
from mmlnb_dist.slides.sampling import candidates, mask_fractions


def test_a_zero_minimum_share_still_needs_tissue_in_the_tile():
    """min_mask_fraction=0: every tile touching the tissue is a candidate, a tile with none is not."""
    raster = np.zeros((30, 30), bool)
    raster[:8, :8] = True  # tissue in the top-left corner only (level 0: 0..80)
    cands = candidates(raster, 10.0, (300, 300), 100, SamplingConfig(mode="grid", min_mask_fraction=0.0), "s")
    xs, ys = np.meshgrid(np.arange(0, 201, 100), np.arange(0, 201, 100))
    frac = mask_fractions(raster, 10.0, xs.ravel(), ys.ravel(), 100)
    expected = {(int(x), int(y)) for x, y, f in zip(xs.ravel(), ys.ravel(), frac) if f > 0}
    assert {(x, y) for x, y, _ in cands} == expected == {(0, 0)}


def test_random_sampling_keeps_tiles_exactly_at_the_minimum_share():
    """Tissue everywhere and min_mask_fraction=1: every tile is wholly inside, so random sampling finds tiles."""
    raster = np.ones((40, 40), bool)
    cfg = SamplingConfig(mode="random", min_mask_fraction=1.0, seed=1)
    cands = candidates(raster, 10.0, (400, 400), 100, cfg, "s")
    assert len(cands) >= 4 and all(f == 1.0 for _, _, f in cands)


def test_a_slide_smaller_than_a_tile_has_no_random_candidate():
    """A 60 x 60 slide and 100-px tiles: no position holds a whole tile (none at negative coordinates)."""
    raster = np.ones((6, 6), bool)
    cfg = SamplingConfig(mode="random", min_mask_fraction=0.0)
    assert candidates(raster, 10.0, (60, 60), 100, cfg, "s") == []
    assert candidates(raster, 10.0, (60, 600), 100, cfg, "s") == []
