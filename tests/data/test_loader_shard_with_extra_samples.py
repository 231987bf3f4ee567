"""A shard holding more samples than its manifest entry counts (written or replaced after the manifest; with
`data.loader.preflight=off` nothing else looks) had its extras skipped by the loader without a word: the split
was smaller than its shard files. The loader reads one sample past the count and says so, naming the shard and
both counts; the samples it reads are the manifest's, as before."""
from __future__ import annotations

import logging

from mmlnb_dist.data.loader import ShardLoader
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.data.writer import write_tar_shard
from mmlnb_dist.recipes.fusion.steps import preprocess_for

from support.shards import make_shard_set

CLASSES = ["UD", "PD", "D"]


def _keys(shards, mode):
    ld = ShardLoader(ShardSet.open(shards), "train", preprocess_for(CLASSES, 16, False), rank=0, world_size=1,
                     mode=mode, batch_size=4, num_workers=0, seed=0, shuffle_buffer=8)
    ld.set_epoch(0)
    return sorted(k for b in ld for k in b["key"])


def test_a_shard_with_more_samples_than_its_manifest_entry_is_said(tmp_path, caplog):
    shards = make_shard_set(tmp_path, per_class=4, max_per_shard=6, val_fraction=0.0)
    path = shards / "train-000000.tar"
    samples = list(iter_shard_samples(path))
    listed = len(samples)
    before = _keys(shards, "eval")
    extra = [{**s, "__key__": f"{s['__key__']}-copy"} for s in samples[:2]]
    write_tar_shard(path, samples + extra, CLASSES)
    with caplog.at_level(logging.WARNING):
        assert _keys(shards, "eval") == before  # the manifest's samples, as before
    said = [r.getMessage() for r in caplog.records if "train-000000.tar" in r.getMessage()]
    assert len(said) == 1 and f"holds {listed + 2} samples, its manifest entry says {listed}" in said[0], said
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _keys(shards, "train")
    assert any(f"holds {listed + 2} samples" in r.getMessage() for r in caplog.records)
