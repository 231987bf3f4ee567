"""Balanced quotas (`slides.sampling.balance_classes`) count no candidate for a slide smaller than one tile: grid
sampling gave it one (the tile at (0, 0), past the slide's edge), which inflated its class's budget by a tile
`process_slide` never makes (it reports the slide `no_tiles`, smaller than one tile); random sampling gave none."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.slides.sampling import candidates


@pytest.mark.parametrize("mode", ["grid", "random"])
def test_a_slide_smaller_than_a_tile_has_no_candidate(mode):
    cfg = load_config(None, [f"slides.sampling.mode={mode}"]).slides.sampling
    raster = np.ones((8, 8), bool)  # all tissue
    assert candidates(raster, 64.0, (512, 512), 600, cfg, "S") == []
    assert candidates(raster, 64.0, (512, 700), 600, cfg, "S") == []  # fits one axis only
    assert len(candidates(raster, 64.0, (512, 512), 256, cfg, "S")) > 0


def test_balanced_quotas_do_not_count_a_slide_smaller_than_a_tile(tmp_path):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide
    from mmlnb_dist.slides.tiler import plan_quotas

    write_synthetic_slide(tmp_path / "small.tif", "UD", width=1024, height=1024, pool_size=3, downsamples=(1,),
                          seed=0)
    write_synthetic_slide(tmp_path / "big.tif", "PD", width=2048, height=2048, pool_size=3, downsamples=(1, 4),
                          seed=1)
    masks = tmp_path / "masks"  # each slide all tissue: the small one's only grid position is all tissue
    masks.mkdir()
    for sid, side in (("small", 1024), ("big", 2048)):
        (masks / f"{sid}.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [
            [[0, 0], [side, 0], [side, side], [0, side], [0, 0]]]}))
    s = load_config(None, ["slides.sampling.balance_classes=true", "slides.tile_size=1100",
                           f"slides.mask_dir={masks}"]).slides
    assert _grid_count(s, tmp_path / "small.tif") == 1  # with the tile's edge check left out: 1 (at (0, 0))
    quotas, notes = plan_quotas(s, {"small": (tmp_path / "small.tif", "UD"), "big": (tmp_path / "big.tif", "PD")})
    # the UD class has no tile to give (counted, it would have got the one past the edge): it is left out of the
    # balance, and PD keeps its one candidate
    assert quotas == {"small": 0, "big": 1} and notes == {}


def _grid_count(s, path):
    """Grid positions of the slide's tissue mask that hold half a tile of tissue, ignoring the slide's edge."""
    from mmlnb_dist.slides.reader import SlideReader
    from mmlnb_dist.slides.sampling import mask_fractions
    from mmlnb_dist.slides.slide_task import slide_mask

    with SlideReader(path) as reader:
        _, mask = slide_mask(reader, s, s.mask_dir / f"{path.stem}.geojson")
    return int((mask_fractions(mask.raster, mask.scale, np.array([0]), np.array([0]), 1100) >= 0.5).sum())
