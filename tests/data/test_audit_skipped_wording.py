"""Audit of `data.skipped`: the shards command's listing (heading, then every image with its reason) and the
pipeline's one-line summary (at most `shown` images, then how many more)."""
from __future__ import annotations

from mmlnb_dist.data.skipped import skipped_listing, skipped_summary

SKIPPED = [{"key": f"k{i}", "source": f"img{i}.png", "reason": f"reason {i}"} for i in range(5)]


def test_the_listing_has_the_heading_and_every_image():
    assert skipped_listing(SKIPPED[:2]) == [
        "skipped 2 unreadable images (listed in manifest.json 'skipped'):",
        "  img0.png  reason 0",
        "  img1.png  reason 1",
    ]
    assert len(skipped_listing(SKIPPED)) == 6


def test_the_summary_shows_as_many_as_asked_then_counts_the_rest():
    assert skipped_summary(SKIPPED, shown=1) == ("skipped 5 unreadable images (listed in manifest.json 'skipped'): "
                                                  "img0.png (reason 0); and 4 more")
    assert skipped_summary(SKIPPED, shown=5).endswith("img4.png (reason 4)")
    assert skipped_summary(SKIPPED[:1]).endswith(": img0.png (reason 0)")
