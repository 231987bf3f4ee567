"""An interrupted `shards build` resumes from the shards it finished.

Building shards from a large patch folder re-encodes every image (minutes to an hour); a build killed at 90% started
again from the first image, because everything lived in a `.partial-<pid>` folder that the next build deleted. Now
the folder is named after the job (inputs, options, classes) and every finished shard is recorded beside it; the same
command reuses the finished shards, encodes only the rest, and writes the bytes one uninterrupted build writes. Any
other job starts afresh (and removes the leftover)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mmlnb_dist.data import build as B
from mmlnb_dist.data.collect import collect_samples
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset

N = 48
CONFIG = BuildConfig(max_samples_per_shard=6, val_fraction=0.25, test_fraction=0.0, image_size=32)


def files(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    make_synthetic_dataset(src, n=N, size=48, n_slides=8, noisy_description_rate=0.0, seed=0)
    return collect_samples(src, CLASSES, descriptions=src / "descriptions.jsonl")


def counted_build(samples, out: Path, monkeypatch, config=CONFIG, stop_after=None) -> int:
    """Build; return how many images it encoded. With `stop_after`, the build is stopped (as Ctrl-C stops it) when
    it starts encoding image number `stop_after + 1`."""
    real, calls = B._encode, [0]

    def encode(spec, build):
        calls[0] += 1
        if stop_after is not None and calls[0] > stop_after:
            raise KeyboardInterrupt
        return real(spec, build)

    monkeypatch.setattr(B, "_encode", encode)
    try:
        B.build_shards(samples, out, config, CLASSES, progress=False)
    except KeyboardInterrupt:
        assert stop_after is not None
    finally:
        monkeypatch.setattr(B, "_encode", real)
    return calls[0]


def interrupted_build(samples, out: Path, monkeypatch, stop_after: int) -> None:
    counted_build(samples, out, monkeypatch, stop_after=stop_after)
    assert not (out / "manifest.json").exists()  # stopped before the end


def test_a_stopped_build_resumes_from_its_finished_shards_and_writes_the_same_bytes(samples, tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    assert counted_build(samples, whole, monkeypatch) == N
    out = tmp_path / "resumed"
    # The encoding runs a few images ahead of the shard being written (a thread pool): with 20 images encoded, at
    # least the first two 6-image shards were finished.
    interrupted_build(samples, out, monkeypatch, stop_after=20)
    assert not (out / "manifest.json").exists()  # nothing finished-looking was left
    encoded = counted_build(samples, out, monkeypatch)
    assert encoded <= N - 12, f"the resumed build encoded {encoded} of {N} images: it started over"
    assert files(out) == files(whole)
    assert not list(out.glob(".partial-*"))  # the kept work was moved into place


def test_a_build_of_other_inputs_or_options_does_not_reuse_the_stopped_one(samples, tmp_path, monkeypatch):
    out = tmp_path / "out"
    interrupted_build(samples, out, monkeypatch, stop_after=20)
    other = CONFIG.model_copy(update={"image_size": 40})
    assert counted_build(samples, out, monkeypatch, other) == N
    B.build_shards(samples, tmp_path / "reference", other, CLASSES, progress=False)
    assert files(out) == files(tmp_path / "reference")
    assert not list(out.glob(".partial-*"))


def _cut_short(data: bytes) -> bytes:
    return data[:100]  # as a full disk or a copy gone wrong would


def _one_byte_flipped(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0xFF  # in place, the size unchanged: bit rot, a bad copy over the same file
    return bytes(changed)


@pytest.mark.parametrize("damage", [_cut_short, _one_byte_flipped])
def test_a_shard_damaged_after_the_stop_is_written_again(samples, tmp_path, monkeypatch, damage):
    """A finished shard is reused only when its bytes match the recorded digest, not just its size: without it the
    resumed build would ship the damaged shard, and its manifest would vouch for it."""
    whole = tmp_path / "whole"
    B.build_shards(samples, whole, CONFIG, CLASSES, progress=False)
    out = tmp_path / "out"
    interrupted_build(samples, out, monkeypatch, stop_after=20)
    kept = sorted(next(out.glob(".partial-*")).glob("*.tar"))
    assert kept, "the stopped build kept no finished shard"
    kept[0].write_bytes(damage(kept[0].read_bytes()))
    B.build_shards(samples, out, CONFIG, CLASSES, progress=False)
    assert files(out) == files(whole)
