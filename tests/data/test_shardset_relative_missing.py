"""A run's config.yaml keeps `data.shards` as given (often relative, `shards/clip-multilabel`); `evaluate --export
runs/x/export` started from another folder then stopped on "shard folder not found: shards/clip-multilabel" with no
hint that the path was read against the current folder. The message now says so, names the folder it looked in and
the override to give."""
from __future__ import annotations

import pytest

from mmlnb_dist.data.shardset import ShardError, ShardSet


def test_a_missing_relative_shard_folder_says_where_it_was_looked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ShardError) as info:
        ShardSet.open("shards/clip-multilabel")
    msg = str(info.value)
    assert msg.startswith("shard folder not found: shards/clip-multilabel"), msg
    assert "relative" in msg and str(tmp_path / "shards" / "clip-multilabel") in msg, msg
    assert "data.shards=" in msg, msg


def test_a_missing_absolute_shard_folder_keeps_the_plain_message(tmp_path):
    with pytest.raises(ShardError) as info:
        ShardSet.open(tmp_path / "nowhere")
    assert str(info.value) == f"shard folder not found: {tmp_path / 'nowhere'}"
