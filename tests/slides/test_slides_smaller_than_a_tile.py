"""A slide smaller than one tile (at level 0) gives no tile, saying so: grid sampling placed one tile at (0, 0)
running off the slide's edge, read back padded with white, while random sampling gave none; the slide is now
`no_tiles` in both modes, its error naming the slide's size and the tile's."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.config import load_config


@pytest.fixture(scope="module")
def small_slide(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    path = tmp_path_factory.mktemp("small") / "S.tif"
    write_synthetic_slide(path, "UD", width=512, height=384, mpp=0.5, cell=128, tile=128, pool_size=2,
                          downsamples=(1, 4), blur=False)
    return path


@pytest.mark.parametrize("mode", ["grid", "random"])
def test_a_slide_smaller_than_one_tile_gives_no_tile_and_says_why(small_slide, tmp_path, mode):
    from mmlnb_dist.slides.slide_task import SlideJob, process_slide

    ring = [[0, 0], [512, 0], [512, 384], [0, 384], [0, 0]]
    (tmp_path / "m.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    cfg = load_config(None, ["slides.mpp=1.0", "slides.tile_size=256", "slides.qc_pictures=false",  # 512 px at level 0
                             f"slides.sampling.mode={mode}", "slides.qc.min_tissue_fraction=0",
                             "slides.qc.min_blur=0", "slides.qc.min_contrast=0", "slides.qc.max_pen_fraction=1"])
    result = process_slide(SlideJob("S", small_slide, "UD", cfg.slides, tmp_path / "work", "fp",
                                    mask_path=tmp_path / "m.geojson"))
    assert (result["status"], result["candidates"], result["kept"]) == ("no_tiles", 0, 0), result
    assert result["error"] == ("the slide (512 x 384 px at level 0) is smaller than one tile (512 px at level 0: "
                               "slides.tile_size=256 at slides.mpp=1.0)")
