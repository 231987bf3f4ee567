"""A slide with no pyramid (one tiled level: what some converters and exports write) has its thumbnail read in bands
of at most `THUMBNAIL_READ_PIXELS` level pixels: reading the whole level 0 at once needs width x height x 4 bytes
(a 100k x 80k scan: 32 GB), which killed the run instead of making one small thumbnail."""
from __future__ import annotations

import numpy as np

from mmlnb_dist.slides import reader as reader_module
from mmlnb_dist.slides.reader import SlideReader


def test_a_single_level_slide_thumbnail_is_read_in_bands_and_matches_a_whole_read(tmp_path, monkeypatch):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    path = tmp_path / "flat.tif"
    write_synthetic_slide(path, "UD", width=1024, height=768, downsamples=(1,), pool_size=3, seed=1)
    with SlideReader(path) as r:
        assert len(r.level_downsamples) == 1
        whole, scale = r.thumbnail(8.0)
        reads = []
        real = r.read_level0_rect

        def spy(x, y, w, h, level):
            reads.append(w * h / r.level_downsamples[level] ** 2)
            return real(x, y, w, h, level)

        monkeypatch.setattr(reader_module, "THUMBNAIL_READ_PIXELS", 1024 * 100)
        monkeypatch.setattr(r, "read_level0_rect", spy)
        banded, banded_scale = r.thumbnail(8.0)
    assert len(reads) > 1 and max(reads) <= 1024 * 100
    assert banded.shape == whole.shape and banded_scale == scale
    assert np.abs(banded.astype(int) - whole.astype(int)).mean() < 2.0
