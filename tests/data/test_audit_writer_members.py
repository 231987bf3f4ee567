"""Audit of `data.writer`: which members a sample becomes. Keys starting with `__` (`__key__`, `__shard__`,
`__url__` that a re-shard carries over from a reader) are bookkeeping, not members; other values are written as
their text (a numpy integer class index as its digits, as a Python int is)."""
from __future__ import annotations

import tarfile

import numpy as np

from mmlnb_dist.data.writer import as_bytes, write_tar_shard

CLASSES = ["UD", "PD", "D"]


def _members(path):
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


def test_double_underscore_fields_are_not_written(tmp_path):
    samples = [{"__key__": "a", "__shard__": "old-000000.tar", "__url__": "/x/old-000000.tar", "__local_path__": "x",
                "jpg": b"\xff\xd8", "cls": 1, "txt": "text"}]
    entry = write_tar_shard(tmp_path / "s.tar", samples, CLASSES)
    assert _members(tmp_path / "s.tar") == {"a.cls": b"1", "a.jpg": b"\xff\xd8", "a.txt": b"text"}
    assert entry["num_samples"] == 1 and entry["class_counts"] == {"UD": 0, "PD": 1, "D": 0}


def test_numpy_scalars_are_written_as_their_text(tmp_path):
    samples = [{"__key__": f"k{i}", "jpg": b"x", "cls": np.int64(i), "json": {"w": 1}} for i in range(3)]
    entry = write_tar_shard(tmp_path / "s.tar", samples, CLASSES)
    members = _members(tmp_path / "s.tar")
    assert [members[f"k{i}.cls"] for i in range(3)] == [b"0", b"1", b"2"]
    assert entry["class_counts"] == {"UD": 1, "PD": 1, "D": 1}
    assert as_bytes(np.float32(0.5)) == b"0.5" and as_bytes(3) == b"3" and as_bytes("é") == "é".encode()
    assert as_bytes({"b": "é", "a": 1}) == '{"a": 1, "b": "é"}'.encode()


def test_no_samples_is_an_empty_finished_shard_and_no_partial_file(tmp_path):
    """The build writes a chunk whose every image was unreadable through the writer too: it gets a finished, empty
    tar (which the build then drops), never a `.partial` left behind."""
    entry = write_tar_shard(tmp_path / "s.tar", iter(()), CLASSES)
    assert entry["num_samples"] == 0 and entry["class_counts"] == {c: 0 for c in CLASSES}
    assert [p.name for p in tmp_path.iterdir()] == ["s.tar"] and _members(tmp_path / "s.tar") == {}
    assert entry["bytes"] == (tmp_path / "s.tar").stat().st_size
