"""`data.loader.preflight=size` catches a shard changed in place that kept its byte size (a tar grows in 10 KiB
records, so an edited or swapped shard often does): the shards modified after their manifest are hashed."""
from __future__ import annotations

import os

import pytest

from mmlnb_dist.data.preflight import check_shard_files
from mmlnb_dist.data.shardset import ShardError, ShardSet

from support.shards import make_shard_set


def _age(shards, seconds):
    """Every file of the set dated `seconds` back, the manifest last written (as a build leaves them)."""
    for path in shards.iterdir():
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 10**9 + (path.name == "manifest.json")))


def test_size_mode_names_a_shard_altered_in_place_with_its_size_kept(tmp_path):
    shards = make_shard_set(tmp_path, per_class=10, max_per_shard=5, val_fraction=0.0)
    _age(shards, 60)
    s = ShardSet.open(shards)
    assert check_shard_files(s, "size") == 6
    target = shards / "train-000002.tar"
    data = bytearray(target.read_bytes())
    data[600] ^= 0xFF  # same size, other bytes (an image edited in place)
    target.write_bytes(bytes(data))
    assert target.stat().st_size == len(data)
    with pytest.raises(ShardError, match=r"train-000002\.tar: sha256 differs"):
        check_shard_files(s, "size")


def test_size_mode_passes_an_untouched_set_and_a_copy_with_new_times(tmp_path):
    shards = make_shard_set(tmp_path, per_class=10, max_per_shard=5, val_fraction=0.0)
    _age(shards, 60)
    assert check_shard_files(ShardSet.open(shards), "size") == 6
    for path in shards.iterdir():  # `cp -r`: every file dated now, the manifest possibly first
        os.utime(path)
    assert check_shard_files(ShardSet.open(shards), "size") == 6
