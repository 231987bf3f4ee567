"""Audit of the synthetic whole slides (`slides.synthetic_slides`), the ground truth of the slide tests: tiles are
classed by the cells they touch, the layout refuses sizes that are not whole cells and blurs only tissue on the
right, and the written pyramid has the layout's glass and tissue where the layout says, at every level, with the
resolution tag only when asked and nothing left half-written."""
from __future__ import annotations

import numpy as np
import pytest

from mmlnb_dist.slides.synthetic_slides import SyntheticLayout, make_layout, write_synthetic_slide


def test_a_tile_is_classed_by_every_cell_it_touches():
    tissue = np.array([[1, 1, 0], [1, 1, 0]], bool)
    blurred = np.array([[0, 1, 0], [0, 1, 0]], bool)
    layout = SyntheticLayout(300, 200, 100, 0.5, tissue, blurred)
    assert layout.region_of_tile(0, 0, 100) == "tissue"
    assert layout.region_of_tile(0, 0, 101) == "mixed"  # reaches one pixel into a blurred cell
    assert layout.region_of_tile(100, 0, 100) == "blurred" and layout.region_of_tile(100, 100, 100) == "blurred"
    assert layout.region_of_tile(200, 0, 100) == "background"
    assert layout.region_of_tile(150, 0, 100) == "mixed"  # blurred and glass
    assert layout.region_of_tile(199, 199, 1) == "blurred" and layout.cell_of(299, 199) == (1, 2)


def test_the_layout_is_whole_cells_and_blurs_only_tissue_on_its_right():
    with pytest.raises(ValueError, match="multiple of the cell size"):
        make_layout(1000, 1024, 256, 0.5, 0)
    with pytest.raises(ValueError, match="multiple of the cell size"):
        make_layout(1024, 1000, 256, 0.5, 0)
    layout = make_layout(4096, 2048, 128, 0.5, seed=1)
    assert layout.tissue.shape == (16, 32) and layout.blurred.any()
    assert not (layout.blurred & ~layout.tissue).any()
    cols = np.nonzero(layout.blurred.any(axis=0))[0]
    tissue_cols = np.nonzero(layout.tissue.any(axis=0))[0]
    assert cols.min() > (tissue_cols.min() + tissue_cols.max()) / 2  # the right-hand part of the section
    assert not make_layout(4096, 2048, 128, 0.5, seed=1, blur=False).blurred.any()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("synth") / "s.tif"
    layout = write_synthetic_slide(path, "UD", width=768, height=512, cell=128, tile=512, downsamples=(1, 4),
                                   pool_size=2, seed=2, blur=False)
    return path, layout


def test_the_pyramid_has_glass_and_tissue_where_the_layout_says(written):
    import openslide

    path, layout = written
    assert not list(path.parent.glob("*.partial"))
    with openslide.OpenSlide(str(path)) as slide:
        assert slide.level_dimensions == ((768, 512), (192, 128))
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5, rel=1e-3)
        for level, ds in ((0, 1), (1, 4)):
            img = np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]))[..., :3]
            side = 128 // ds
            for cy in range(layout.tissue.shape[0]):
                for cx in range(layout.tissue.shape[1]):
                    cell = img[cy * side:(cy + 1) * side, cx * side:(cx + 1) * side].astype(float)
                    glass = np.abs(cell - (242, 241, 239)).mean() < 6
                    assert glass != layout.tissue[cy, cx], (level, cy, cx)
            if level == 1:  # the coarse level is the fine one area-averaged (not subsampled)
                fine = np.asarray(slide.read_region((0, 0), 0, (768, 512)))[..., :3].astype(float)
                block = fine.reshape(128, 4, 192, 4, 3).mean(axis=(1, 3))
                assert np.abs(img.astype(float) - block).mean() < 3


def test_every_level_carries_its_own_resolution_tag(written):
    import tifffile

    path, _ = written
    with tifffile.TiffFile(path) as tif:
        for page, ds in zip(tif.pages, (1, 4)):
            num, den = page.tags["XResolution"].value
            assert num / den == pytest.approx(1e4 / (0.5 * ds), rel=1e-3)  # pixels per cm at that level


def test_an_empty_slide_without_resolution(tmp_path):
    import openslide

    path = tmp_path / "e.tif"
    assert make_layout(512, 512, 32, 0.5, seed=0).blurred.any()  # the same layout, with tissue, blurs some
    layout = write_synthetic_slide(path, "D", width=512, height=512, cell=32, tile=256, downsamples=(1, 4),
                                   pool_size=1, tissue=False, write_mpp=False)
    assert not layout.tissue.any() and not layout.blurred.any()
    with openslide.OpenSlide(str(path)) as slide:
        assert "openslide.mpp-x" not in slide.properties
        img = np.asarray(slide.read_region((0, 0), 0, (512, 512)))[..., :3].astype(float)
        assert np.abs(img - (242, 241, 239)).max() < 12
    with pytest.raises(ValueError, match="divisible by every downsample"):
        write_synthetic_slide(tmp_path / "x.tif", "D", width=512, height=512, cell=100, downsamples=(1, 8))
