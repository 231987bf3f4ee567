"""The shard writer on webdataset's TarWriter: the same samples give the same bytes, those bytes equal a
plain-tarfile reference writer with the same fixed headers, and the reader gives the samples back."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardError
from mmlnb_dist.data.writer import as_bytes, write_tar_shard

CLASSES = ["UD", "PD", "D"]


def _samples():
    return [{"__key__": f"k{i:03d}", "png": bytes([i]) * (100 + i), "cls": str(i % 3),
             "json": {"label": CLASSES[i % 3], "slide_id": f"s{i % 2}", "note": "é"}, "txt": f"patch {i} ünïcode"}
            for i in range(7)]


def _reference_tar(path: Path, samples) -> None:
    """The same archive written with the standard library alone: POSIX format, members sorted by extension,
    mtime 0, uid/gid 0, empty owner names, mode 0644."""
    with open(path, "wb") as stream, tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for s in samples:
            for ext in sorted(k for k in s if not k.startswith("__")):
                data = as_bytes(s[ext])
                info = tarfile.TarInfo(f"{s['__key__']}.{ext}")
                info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "", ""
                tar.addfile(info, io.BytesIO(data))


def test_rebuild_is_byte_identical_and_equals_a_tarfile_reference(tmp_path):
    a, b, ref = tmp_path / "a.tar", tmp_path / "b.tar", tmp_path / "ref.tar"
    entry = write_tar_shard(a, _samples(), CLASSES)
    write_tar_shard(b, _samples(), CLASSES)
    _reference_tar(ref, _samples())
    assert a.read_bytes() == b.read_bytes() == ref.read_bytes()
    assert entry["num_samples"] == 7 and entry["class_counts"] == {"UD": 3, "PD": 2, "D": 2}
    assert entry["bytes"] == a.stat().st_size and not (tmp_path / "a.tar.partial").exists()


def test_reader_returns_what_was_written(tmp_path):
    write_tar_shard(tmp_path / "s.tar", _samples(), CLASSES)
    back = list(iter_shard_samples(tmp_path / "s.tar"))
    assert [s["__key__"] for s in back] == [s["__key__"] for s in _samples()]
    for got, want in zip(back, _samples()):
        assert got["png"] == want["png"] and got["txt"].decode() == want["txt"]
        assert json.loads(got["json"]) == want["json"] and got["__shard__"] == "s.tar"


@pytest.mark.parametrize("bad,message", [
    ({"__key__": "has.dot"}, "invalid sample key"),
    ({"__key__": "k000"}, "duplicate sample key"),
])
def test_bad_keys_are_refused_and_leave_no_shard(tmp_path, bad, message):
    samples = _samples() + [{**_samples()[0], **bad}]
    with pytest.raises(ShardError, match=message):
        write_tar_shard(tmp_path / "s.tar", samples, CLASSES)
    assert not (tmp_path / "s.tar").exists() and not (tmp_path / "s.tar.partial").exists()
