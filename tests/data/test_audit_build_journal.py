"""Audit of `data.build_journal`: what a stopped build's job digest covers, and what a resumed build makes of a
damaged chunk record or a record's temporary file left by a kill.

The digest names the `.partial-<job>` folder a resumed build reuses: anything the shard bytes depend on that it
missed would let a build of other inputs ship the stopped build's shards (old labels, old descriptions, old
classes). Sample order is not such a thing: the build sorts the samples, so any order must reuse the same job."""
from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from mmlnb_dist.data import build as B
from mmlnb_dist.data.build import SampleSpec
from mmlnb_dist.data.build_journal import job_digest
from mmlnb_dist.data.config import BuildConfig

CLASSES = ["UD", "PD", "D"]
OPTIONS = BuildConfig().model_dump(mode="json")


def _specs(tmp_path: Path):
    image = tmp_path / "a.png"
    image.write_bytes(b"not decoded by the digest")
    return [SampleSpec("a", "UD", image, slide_id="s1", description="one", meta={"x": 1}),
            SampleSpec("b", "PD", b"bytes of b", slide_id="s2", description="two", meta={"x": 2})]


@pytest.mark.parametrize("change", [
    lambda s: replace(s, label="D"),
    lambda s: replace(s, slide_id="s9"),
    lambda s: replace(s, description="another"),
    lambda s: replace(s, meta={"x": 3}),
    lambda s: replace(s, key="c"),
], ids=["label", "slide", "description", "meta", "key"])
def test_the_job_digest_changes_with_every_sample_field(tmp_path, change):
    specs = _specs(tmp_path)
    before = job_digest(specs, OPTIONS, CLASSES)
    assert job_digest([change(specs[0]), specs[1]], OPTIONS, CLASSES) != before
    assert job_digest([specs[0], change(specs[1])], OPTIONS, CLASSES) != before


def test_the_job_digest_changes_with_classes_options_and_image_identity_but_not_order(tmp_path):
    specs = _specs(tmp_path)
    before = job_digest(specs, OPTIONS, CLASSES)
    assert len(before) == 16 and int(before, 16) >= 0
    assert job_digest(list(reversed(specs)), OPTIONS, CLASSES) == before  # the build sorts them anyway
    assert job_digest(specs, OPTIONS, ["UD", "PD", "D", "X"]) != before
    assert job_digest(specs, OPTIONS, ["PD", "UD", "D"]) != before  # class indices change with the order
    assert job_digest(specs, {**OPTIONS, "image_size": OPTIONS["image_size"] + 1}, CLASSES) != before
    assert job_digest([specs[0], replace(specs[1], image=b"other bytes")], OPTIONS, CLASSES) != before
    # an image file rewritten with the same size: only its modification time tells
    st = specs[0].image.stat()
    os.utime(specs[0].image, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert job_digest(specs, OPTIONS, CLASSES) != before


# -- resuming with a damaged journal ---------------------------------------------------------------------------
N = 24
CONFIG = BuildConfig(max_samples_per_shard=4, val_fraction=0.25, test_fraction=0.0, image_size=16)


def _png(seed: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def samples():
    return [SampleSpec(f"k{i:02d}", CLASSES[i % 3], _png(i), slide_id=f"s{i % 6}") for i in range(N)]


def _files(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _stopped(samples, out: Path, monkeypatch, stop_after: int) -> Path:
    real, calls = B._encode, [0]

    def encode(spec, build):
        calls[0] += 1
        if calls[0] > stop_after:
            raise KeyboardInterrupt
        return real(spec, build)

    monkeypatch.setattr(B, "_encode", encode)
    with pytest.raises(KeyboardInterrupt):
        B.build_shards(samples, out, CONFIG, CLASSES, progress=False)
    monkeypatch.setattr(B, "_encode", real)
    (partial,) = out.glob(".partial-*")
    assert sorted(partial.glob(".chunk-*.json")), "the stopped build recorded no finished chunk"
    return partial


def test_an_unreadable_chunk_record_is_written_again_not_a_crash(samples, tmp_path, monkeypatch):
    """A record cut short (a full disk, a bad copy) is not JSON: that chunk is encoded again, and the result is the
    uninterrupted build's."""
    whole = tmp_path / "whole"
    B.build_shards(samples, whole, CONFIG, CLASSES, progress=False)
    out = tmp_path / "out"
    partial = _stopped(samples, out, monkeypatch, stop_after=14)
    record = sorted(partial.glob(".chunk-*.json"))[0]
    record.write_text(record.read_text()[:20])
    B.build_shards(samples, out, CONFIG, CLASSES, progress=False)
    assert _files(out) == _files(whole)


def test_a_records_temporary_file_left_by_a_kill_is_not_shipped(samples, tmp_path, monkeypatch):
    """`replace_text` writes a record through `<record>.<pid>.<id>.tmp`; a kill between the write and the rename
    leaves that file in the job folder, and it must not be moved into the finished shard set."""
    whole = tmp_path / "whole"
    B.build_shards(samples, whole, CONFIG, CLASSES, progress=False)
    out = tmp_path / "out"
    partial = _stopped(samples, out, monkeypatch, stop_after=14)
    record = sorted(partial.glob(".chunk-*.json"))[0]
    (partial / f"{record.name}.4242.0123456789ab.tmp").write_text(record.read_text())
    B.build_shards(samples, out, CONFIG, CLASSES, progress=False)
    assert _files(out) == _files(whole)
    assert not [p.name for p in out.iterdir() if p.name.startswith((".chunk", ".partial"))]
