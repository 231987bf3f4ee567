"""Audit of the pre-flight shard check (`data.preflight`): an unknown mode is refused (never a silent size-only
check), a manifest without checksums is checked on sizes alone, and a long list of bad shards is cut at twenty with
the count of the rest."""
from __future__ import annotations

import hashlib
import json

import pytest

from mmlnb_dist.data.preflight import check_shard_files
from mmlnb_dist.data.shardset import ShardError, ShardSet


def _shard_set(root, n, sha=True, bytes_=None):
    root.mkdir()
    entries = []
    for i in range(n):
        data = f"shard {i}".encode()
        (root / f"train-{i:06d}.tar").write_bytes(data)
        entry = {"file": f"train-{i:06d}.tar", "num_samples": 1, "bytes": len(data) if bytes_ is None else bytes_}
        if sha:
            entry["sha256"] = hashlib.sha256(data).hexdigest()
        entries.append(entry)
    (root / "manifest.json").write_text(json.dumps({"format": "mmlnb-shards/1", "classes": ["a"], "splits": {
        "train": {"shards": entries, "num_samples": n}}}))
    return ShardSet.open(root)


def test_an_unknown_mode_is_refused_naming_the_modes(tmp_path):
    s = _shard_set(tmp_path / "s", 1)
    with pytest.raises(ShardError, match="'sha' is not one of checksum, size, off"):
        check_shard_files(s, "sha")


def test_a_manifest_without_checksums_is_checked_on_sizes_only(tmp_path):
    s = _shard_set(tmp_path / "s", 3, sha=False)
    assert check_shard_files(s, "checksum") == 3
    (tmp_path / "s" / "train-000001.tar").write_bytes(b"shard X")  # same size, other bytes: nothing to compare
    assert check_shard_files(s, "checksum") == 3
    (tmp_path / "s" / "train-000002.tar").write_bytes(b"short")
    with pytest.raises(ShardError, match=r"train-000002\.tar: 5 bytes, the manifest says 7"):
        check_shard_files(s, "checksum")


def test_more_than_twenty_bad_shards_are_listed_twenty_and_counted(tmp_path):
    s = _shard_set(tmp_path / "s", 25)
    for i in range(25):
        (tmp_path / "s" / f"train-{i:06d}.tar").unlink()
    with pytest.raises(ShardError) as err:
        check_shard_files(s, "size")
    text = str(err.value)
    assert "25 shard file(s) do not match" in text and text.count(": missing") == 20
    assert "... and 5 more" in text and "train-000019.tar: missing" in text and "train-000020.tar" not in text
