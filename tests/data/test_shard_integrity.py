"""Samples never disappear without a word: tar member size limit, sizes.json, the pre-flight shard check, short
shards in the loader, and one global bad-sample budget with a ledger reported at the end of every epoch."""
from __future__ import annotations

import io
import json
import tarfile

import pytest

from mmlnb_dist.data.loader import BadSampleRateError, ShardLoader
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardError, ShardSet
from mmlnb_dist.data.writer import write_tar_shard
from mmlnb_dist.recipes.fusion.steps import preprocess_for

from support.shards import CLASSES, make_shard_set


def _loader(shards, mode="eval", workers=0, **kw):
    opts = dict(batch_size=4, num_workers=workers, seed=0, shuffle_buffer=8, rank=0, world_size=1)
    opts.update(kw)
    ld = ShardLoader(ShardSet.open(shards), "train", preprocess_for(CLASSES, 16, mode == "train"), mode=mode, **opts)
    ld.set_epoch(0)
    return ld


def _cut_between_samples(path, keep):
    """Rewrite `path` with only its first `keep` samples: a tar that ends cleanly between two samples."""
    samples = list(iter_shard_samples(path))[:keep]
    write_tar_shard(path, samples, CLASSES)


def _break_images(path, indexes):
    samples = list(iter_shard_samples(path))
    for i in indexes:
        samples[i]["png"] = b"\x89PNG\r\n\x1a\ngarbage"
    write_tar_shard(path, samples, CLASSES)
    return [samples[i]["__key__"] for i in indexes]


# -- item 11: a tar member over the limit -------------------------------------------------------------------------
def test_member_over_the_limit_is_refused_naming_shard_key_and_size(tmp_path):
    path = tmp_path / "s.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("a.cls", b"0"), ("b.cls", b"1"), ("b.png", b"x" * 5000)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert [s["__key__"] for s in iter_shard_samples(path)] == ["a", "b"]  # default limit: 64 MiB
    with pytest.raises(ShardError, match=r"s\.tar.*key 'b'.*b\.png.*5000 bytes.*max_member_bytes=4096"):
        list(iter_shard_samples(path, max_member_bytes=4096))


def test_loader_applies_the_member_limit_from_its_config(tmp_path):
    shards = make_shard_set(tmp_path, per_class=4, val_fraction=0.0)
    with pytest.raises(ShardError, match=r"train-000000\.tar.*max_member_bytes=100"):
        list(_loader(shards, max_member_bytes=100))


# -- item 13: sizes.json beside every shard set ---------------------------------------------------------------------
def test_build_writes_sizes_json_with_every_shard_count(tmp_path):
    shards = make_shard_set(tmp_path, per_class=6, max_per_shard=5)
    sizes = json.loads((shards / "sizes.json").read_text())
    manifest = ShardSet.open(shards).manifest
    expected = {e["file"]: sum(1 for _ in iter_shard_samples(shards / e["file"]))
                for info in manifest["splits"].values() for e in info["shards"]}
    assert sizes == expected and sum(sizes.values()) == 18


# -- item 3: pre-flight check of shard files ------------------------------------------------------------------------
def test_preflight_names_missing_truncated_and_altered_shards(tmp_path):
    from mmlnb_dist.data.preflight import check_shard_files

    shards = make_shard_set(tmp_path, per_class=10, max_per_shard=5, val_fraction=0.0)
    s = ShardSet.open(shards)
    assert check_shard_files(s, "checksum") == 6
    (shards / "train-000001.tar").unlink()
    _cut_between_samples(shards / "train-000003.tar", 3)
    data = bytearray((shards / "train-000004.tar").read_bytes())
    data[600] ^= 0xFF  # same size, other bytes
    (shards / "train-000004.tar").write_bytes(bytes(data))
    with pytest.raises(ShardError) as err:
        check_shard_files(s, "checksum")
    text = str(err.value)
    assert "train-000001.tar: missing" in text and "train-000003.tar" in text and "train-000004.tar: sha256" in text
    assert "shards verify" in text  # the remedy
    with pytest.raises(ShardError) as err:
        check_shard_files(s, "size")  # cheap mode: a stat, and a hash of the shards written after the manifest
    assert "train-000003.tar" in str(err.value) and "train-000004.tar: sha256" in str(err.value)
    assert check_shard_files(s, "off") == 0


def test_preflight_ranks_share_the_hashing(tmp_path):
    from mmlnb_dist.data.preflight import check_shard_files

    shards = make_shard_set(tmp_path, per_class=10, max_per_shard=5, val_fraction=0.0)
    data = bytearray((shards / "train-000004.tar").read_bytes())
    data[600] ^= 0xFF
    (shards / "train-000004.tar").write_bytes(bytes(data))
    s = ShardSet.open(shards)
    results = []
    for rank in range(2):  # shard 4 is hashed by rank 0 only (shards r, r + W, ...)
        try:
            results.append(check_shard_files(s, "checksum", rank=rank, world_size=2))
        except ShardError as err:
            results.append(str(err))
    assert "train-000004.tar: sha256" in results[0] and results[1] == 3


# -- item 3: a shard shorter than its manifest entry is bad data, not a silent end -----------------------------
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_short_shard_is_bad_data_not_a_silent_end(tmp_path, mode):
    shards = make_shard_set(tmp_path, per_class=20, max_per_shard=10, val_fraction=0.0)
    _cut_between_samples(shards / "train-000002.tar", 6)  # 4 of 60 samples gone, the tar ends cleanly
    with pytest.raises(BadSampleRateError, match=r"train-000002\.tar"):
        list(_loader(shards, mode=mode, max_bad_sample_rate=0.05))
    ld = _loader(shards, mode=mode, max_bad_sample_rate=0.1)
    n = sum(len(b["key"]) for b in ld)
    missing = [b for b in ld.bad_samples if b.shard == "train-000002.tar"]
    assert len(missing) == 4 and all("ended after 6 of 10 samples" in b.reason for b in missing)
    assert n == (56 if mode == "eval" else 60)  # eval: simply missing; train: replaced, batch counts stay equal


# -- item 3: one global budget, the same decision with any number of workers -----------------------------------------
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_bad_sample_budget_is_one_rate_whatever_the_number_of_workers(tmp_path, mode):
    shards = make_shard_set(tmp_path, per_class=20, max_per_shard=10, val_fraction=0.0)
    _break_images(shards / "train-000001.tar", [3])  # 1 of 60 = 1.7%
    for workers in (1, 4):  # one process; four workers splitting 6 shards unevenly
        passed = _loader(shards, mode=mode, workers=workers, max_bad_sample_rate=0.02)
        assert sum(len(b["key"]) for b in passed) == (60 if mode == "train" else 59), workers
        assert passed.ledger_summary()["bad"] == 1
        with pytest.raises(BadSampleRateError, match=r"1 bad samples? of 60"):
            list(_loader(shards, mode=mode, workers=workers, max_bad_sample_rate=0.015))


def test_end_epoch_prints_writes_and_logs_the_ledger_and_enforces_the_budget(tmp_path, caplog):
    shards = make_shard_set(tmp_path, per_class=20, max_per_shard=10, val_fraction=0.0)
    bad = _break_images(shards / "train-000001.tar", [3, 5])
    logged = {}

    class Logger:
        def log_metrics(self, metrics, step):
            logged.update(metrics)

        def log_artifact(self, path, *args):
            logged["artifact"] = str(path)

    run_dir = tmp_path / "run"
    ld = _loader(shards, mode="train", workers=2, max_bad_sample_rate=0.05)
    batches = iter(ld)
    for _ in range(len(ld)):  # the recipe's zip(range(n), loader) never reaches the generator's end
        next(batches)
    with caplog.at_level("INFO"):
        summary = ld.end_epoch(run_dir, Logger(), step=7)
    assert summary["bad"] == 2 and summary["rate"] == pytest.approx(2 / 60)
    assert all(k in caplog.text for k in bad) and "train-000001.tar" in caplog.text
    rows = [json.loads(line) for line in (run_dir / "bad_samples.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in rows) == sorted(bad) and {r["split"] for r in rows} == {"train"}
    assert logged["data/bad_samples/train"] == 2.0 and logged["artifact"].endswith("bad_samples.jsonl")
    ld.end_epoch(run_dir, Logger(), step=8)  # nothing new since the last call: nothing added
    assert len((run_dir / "bad_samples.jsonl").read_text().splitlines()) == 2
    strict = _loader(shards, mode="train", workers=2, max_bad_sample_rate=0.02)
    it = iter(strict)
    with pytest.raises(BadSampleRateError):
        for _ in range(len(strict)):
            next(it)
        strict.end_epoch(None, None)
