"""A greyscale scan (no colour: every pixel's saturation near 0) with dark tissue on it read `no tissue found`
under the default saturation channel, with no word of the channel that finds it: the error now says the slide has
no colour and names `slides.tissue.channel=optical_density` (which tiles it). A blank slide still reads `no tissue
found` alone."""
from __future__ import annotations

import numpy as np
import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.slides.slide_task import SlideJob, process_slide


def _slide(path, grey_tissue: bool):
    import tifffile

    rng = np.random.default_rng(0)
    img = np.full((1024, 1024), 238, np.uint8)
    if grey_tissue:
        img[128:896, 128:896] = rng.integers(60, 200, (768, 768))  # textured dark tissue, no colour
    img = np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2))
    tifffile.imwrite(path, img, tile=(256, 256), resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    return path


@pytest.mark.parametrize("grey_tissue", [True, False])
def test_a_colourless_slide_with_dark_tissue_names_the_channel_that_finds_it(tmp_path, grey_tissue):
    path = _slide(tmp_path / "g.tif", grey_tissue)
    cfg = load_config(None, ["slides.tile_size=64", "slides.qc_pictures=false"]).slides
    result = process_slide(SlideJob("g", path, "UD", cfg, tmp_path / "work", "fp"))
    assert result["status"] == "no_tissue"
    if grey_tissue:
        assert "no colour" in result["error"] and "slides.tissue.channel=optical_density" in result["error"], result
        od = load_config(None, ["slides.tile_size=64", "slides.qc_pictures=false",
                                "slides.tissue.channel=optical_density", "slides.qc.min_blur=0"]).slides
        assert process_slide(SlideJob("g", path, "UD", od, tmp_path / "work2", "fp"))["status"] == "ok"
    else:
        assert result["error"] == "no tissue found"
