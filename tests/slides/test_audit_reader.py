"""Audit of the slide reader (`slides.reader`) on a stand-in OpenSlide: the plausible-resolution range includes
its ends, an unparsable resolution tag counts as missing, an empty objective power is unknown, a slide whose
smallest level cannot be decoded is refused when opened, a level-0 rectangle is read at its rounded size at the
level, and a tile is shrunk by area averaging (the block mean) to its output size."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.slides.reader import PLAUSIBLE_MPP, SlideError, SlideReader, resolve_mpp


@pytest.mark.parametrize("mpp", PLAUSIBLE_MPP)
def test_the_ends_of_the_plausible_range_are_scan_resolutions(mpp):
    assert resolve_mpp({"openslide.mpp-x": str(mpp), "openslide.mpp-y": str(mpp)}, None) == (mpp, "metadata", None)


def test_an_unparsable_resolution_counts_as_missing():
    props = {"openslide.mpp-x": "0,25", "openslide.mpp-y": "0,25"}  # a decimal comma
    assert resolve_mpp(props, 0.25) == (0.25, "assumed", None)
    with pytest.raises(SlideError, match="no resolution in the slide metadata"):
        resolve_mpp(props, None)


class FakeSlide:
    """What SlideReader uses of an openslide.OpenSlide: a two-level pyramid of a fixed RGBA pattern."""

    properties = {"openslide.mpp-x": "0.5", "openslide.mpp-y": "0.5", "openslide.objective-power": "",
                  "openslide.vendor": "aperio"}
    fail_smallest = False

    def __init__(self, path):
        self.level_count, self.dimensions = 2, (1024, 512)
        self.level_downsamples, self.level_dimensions = (1.0, 4.0), ((1024, 512), (256, 128))
        self.reads = []
        rng = np.random.default_rng(0)
        self.pixels = rng.integers(0, 256, (512, 1024, 3), dtype=np.uint8)

    def read_region(self, location, level, size):
        self.reads.append((location, level, size))
        if self.fail_smallest and level == self.level_count - 1:
            raise OSError("JPEG decode failed")
        x, y = location
        w, h = size
        region = self.pixels[y:y + h, x:x + w] if level == 0 else np.zeros((h, w, 3), np.uint8)
        alpha = np.full(region.shape[:2] + (1,), 255, np.uint8)
        return Image.fromarray(np.concatenate([region, alpha], axis=-1), "RGBA")

    def close(self):
        pass


@pytest.fixture
def fake(monkeypatch):
    import openslide

    monkeypatch.setattr(openslide, "OpenSlide", FakeSlide)
    return FakeSlide


def test_a_reader_takes_its_id_power_and_vendor_from_the_slide(fake, tmp_path):
    with SlideReader(tmp_path / "case.7.svs") as reader:
        assert reader.slide_id == "case.7" and reader.objective_power is None and reader.vendor == "aperio"
        assert reader.mpp == 0.5 and reader.dimensions == (1024, 512)
    assert SlideReader(tmp_path / "a.svs", "given").slide_id == "given"


def test_a_slide_whose_smallest_level_cannot_be_decoded_is_refused_when_opened(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(FakeSlide, "fail_smallest", True)
    with pytest.raises(SlideError, match=r"cannot read slide broken\.svs: JPEG decode failed"):
        SlideReader(tmp_path / "broken.svs")


def test_a_level0_rectangle_is_read_at_its_rounded_size_at_the_level(fake, tmp_path):
    reader = SlideReader(tmp_path / "s.svs")
    reader._slide.reads.clear()
    assert reader.read_level0_rect(8, 16, 255, 130, level=1).shape == (32, 64, 3)  # 130/4 = 32.5, 255/4 = 63.75
    assert reader._slide.reads == [((8, 16), 1, (64, 32))]
    reader.read_level0_rect(0, 0, 2, 1, level=1)
    assert reader._slide.reads[-1] == ((0, 0), 1, (1, 1))  # never an empty read


def test_a_tile_is_shrunk_by_area_averaging(fake, tmp_path):
    reader = SlideReader(tmp_path / "s.svs")
    tile = reader.read_tile(64, 32, 128, 32, level=0)  # 128 level-0 pixels to 32: 4 x 4 blocks
    block = reader._slide.pixels[32:160, 64:192].astype(np.float64).reshape(32, 4, 32, 4, 3).mean(axis=(1, 3))
    assert tile.shape == (32, 32, 3)
    assert np.abs(tile.astype(np.float64) - block).max() <= 1.0
    same = reader.read_tile(64, 32, 32, 32, level=0)  # already the output size: as read
    np.testing.assert_array_equal(same, reader._slide.pixels[32:64, 64:96])
