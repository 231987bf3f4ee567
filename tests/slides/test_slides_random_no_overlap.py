"""Random (Poisson-disk) sampling at `min_distance=1` is documented as "1 = no overlap", but tile corners were kept
a Euclidean tile side apart: two tiles offset diagonally by (0.75, 0.75) sides are 1.06 sides apart and shared a
quarter-side square of pixels. Corners are now kept apart along x or y (no two tiles share a pixel at 1)."""
from __future__ import annotations

import numpy as np

from mmlnb_dist.slides.config import SamplingConfig
from mmlnb_dist.slides.sampling import poisson_candidates, slide_rng


def _overlaps(tiles, side):
    xy = np.array([(x, y) for x, y, _ in tiles], float)
    gap = np.abs(xy[:, None] - xy[None]).max(-1) + np.eye(len(xy)) * 1e9  # along the farther axis
    return int((gap < side).sum() // 2)


def test_random_tiles_at_min_distance_one_never_overlap():
    raster = np.ones((60, 60), bool)
    cfg = SamplingConfig(mode="random", min_distance=1.0)
    for seed in range(3):
        tiles = poisson_candidates(raster, 10.0, (600, 600), 40, cfg, slide_rng(seed, "s"), None)
        assert len(tiles) > 50
        assert _overlaps(tiles, 40) == 0, seed


def test_a_smaller_min_distance_still_allows_overlap():
    raster = np.ones((60, 60), bool)
    cfg = SamplingConfig(mode="random", min_distance=0.5)
    tiles = poisson_candidates(raster, 10.0, (600, 600), 40, cfg, slide_rng(0, "s"), None)
    assert _overlaps(tiles, 40) > 0 and _overlaps(tiles, 20) == 0
