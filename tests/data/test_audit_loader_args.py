"""Audit of the loader's argument checks (`data.loader.ShardLoader`): a rank outside the world and a batch size
under one are refused before any shard is opened, with the values named."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.data.loader import ShardLoader
from mmlnb_dist.data.shardset import ShardSet


def _opened(root):
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({"format": "mmlnb-shards/1", "classes": ["a"], "splits": {
        "train": {"shards": [], "num_samples": 0}}}))
    return ShardSet.open(root)


@pytest.mark.parametrize("rank, world, batch, message", [(2, 2, 4, "rank 2 is outside world size 2"),
                                                          (-1, 2, 4, "rank -1 is outside world size 2"),
                                                          (0, 1, 0, "batch_size must be >= 1, got 0")])
def test_a_rank_outside_the_world_or_an_empty_batch_is_refused(tmp_path, rank, world, batch, message):
    with pytest.raises(ValueError, match=message):
        ShardLoader(_opened(tmp_path / "s"), "train", None, rank=rank, world_size=world, batch_size=batch,
                    num_workers=0, mode="eval", seed=0, shuffle_buffer=0)
