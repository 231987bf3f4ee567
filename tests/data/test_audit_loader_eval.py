"""Audit of the loader's evaluation path and its order seeding (`data.loader`).

Evaluation must read every sample once, in manifest order, whatever the configured `shuffle_buffer`, run seed or
epoch (a validation pass over a shuffled stream would still count each sample once, but it would not be the same
pass on a rerun, and per-sample outputs written in loader order would no longer match the manifest). Training
order depends on the run seed and the epoch, and on nothing else."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.data.loader import ShardLoader, build_loader
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.recipes.fusion.steps import preprocess_for

from support.shards import CLASSES, FailingKeys, make_shard_set


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """15 samples in 4 shards (4, 4, 4, 3), no held-out split."""
    return make_shard_set(tmp_path_factory.mktemp("eval"), per_class=5, max_per_shard=4, val_fraction=0.0)


def _loader(shards, mode, *, seed=0, epoch=0, shuffle_buffer=0, rank=0, world=1, workers=0):
    ld = ShardLoader(ShardSet.open(shards), "train", preprocess_for(CLASSES, 8, False), rank=rank, world_size=world,
                     batch_size=2, num_workers=workers, mode=mode, seed=seed, shuffle_buffer=shuffle_buffer)
    ld.set_epoch(epoch)
    return ld


def _keys(ld):
    return [k for b in ld for k in b["key"]]


def _manifest_order(shards):
    m = ShardSet.open(shards).manifest
    return [s["__key__"] for e in m["splits"]["train"]["shards"] for s in iter_shard_samples(shards / e["file"])]


@pytest.mark.parametrize("seed,epoch,shuffle_buffer", [(0, 0, 1000), (7, 3, 3), (123, 1, 1)])
def test_evaluation_reads_manifest_order_whatever_the_buffer_seed_and_epoch(shards, seed, epoch, shuffle_buffer):
    assert _keys(_loader(shards, "eval", seed=seed, epoch=epoch, shuffle_buffer=shuffle_buffer)) == \
        _manifest_order(shards)


def test_each_eval_slot_reads_its_contiguous_range_in_manifest_order(shards):
    """Two ranks of two workers: rank r worker w reads global indices [s*N//S, (s+1)*N//S) for slot s = r*2+w, in
    order (a shuffle buffer of the config does not apply)."""
    order, n = _manifest_order(shards), 15
    for rank in range(2):
        ld = _loader(shards, "eval", seed=5, epoch=2, shuffle_buffer=8, rank=rank, world=2, workers=2)
        got = {}
        for b in ld:
            got.setdefault(b["key"][0] in order[(rank * 2) * n // 4:(rank * 2 + 1) * n // 4], []).extend(b["key"])
        slots = [order[s * n // 4:(s + 1) * n // 4] for s in (rank * 2, rank * 2 + 1)]
        assert got == {True: slots[0], False: slots[1]}
        assert ld.num_samples == len(slots[0]) + len(slots[1])


def test_build_loader_ignores_the_epoch_size_and_the_buffer_for_evaluation(shards):
    cfg = load_config(overrides=["data.loader.epoch_samples=40", "data.loader.shuffle_buffer=16",
                                 "data.loader.num_workers=0"]).data.loader
    ev = build_loader(ShardSet.open(shards), "train", preprocess_for(CLASSES, 8, False), cfg, rank=0, world_size=1,
                      batch_size=2, mode="eval", seed=3)
    assert ev.shuffle_buffer == 0 and ev.planned == 15 and ev.num_samples == 15
    assert _keys(ev) == _manifest_order(shards)
    tr = build_loader(ShardSet.open(shards), "train", preprocess_for(CLASSES, 8, False), cfg, rank=0, world_size=1,
                      batch_size=2, mode="train", seed=3)
    assert tr.shuffle_buffer == 16 and tr.planned == 40 and len(_keys(tr)) == 40


def test_training_order_follows_the_seed_and_the_epoch(shards):
    base = _keys(_loader(shards, "train", seed=0, epoch=0, shuffle_buffer=4))
    assert sorted(base) == sorted(_manifest_order(shards))
    assert _keys(_loader(shards, "train", seed=0, epoch=0, shuffle_buffer=4)) == base
    assert _keys(_loader(shards, "train", seed=1, epoch=0, shuffle_buffer=4)) != base
    assert _keys(_loader(shards, "train", seed=0, epoch=1, shuffle_buffer=4)) != base
    # set_epoch is what moves a long-lived loader to the next epoch's order
    ld = _loader(shards, "train", seed=0, epoch=0, shuffle_buffer=4)
    ld.set_epoch(1)
    assert _keys(ld) == _keys(_loader(shards, "train", seed=0, epoch=1, shuffle_buffer=4))


def test_an_eval_ranks_bad_sample_budget_is_over_the_whole_split(shards):
    """Evaluation's budget denominator is every sample of the split (all ranks read it once): 1 bad sample of 15 is
    within a 7% budget on the rank that meets it, though it is 1 of that rank's 7 or 8."""
    bad = _manifest_order(shards)[0]
    ld = ShardLoader(ShardSet.open(shards), "train", FailingKeys(preprocess_for(CLASSES, 8, False), {bad}), rank=0,
                     world_size=2, batch_size=2, num_workers=0, mode="eval", seed=0, shuffle_buffer=4,
                     max_bad_sample_rate=0.07)
    assert ld.planned == 15
    keys = _keys(ld)
    assert bad not in keys and len(keys) == 6 and [b.key for b in ld.bad_samples] == [bad]


def test_each_evaluation_pass_counts_only_its_own_bad_samples(shards):
    """`end_epoch` closes a pass: the next evaluation's ledger holds that pass's bad sample only, so repeated
    evaluations with one bad sample each stay within the budget instead of adding up to a failure."""
    bad = _manifest_order(shards)[3]
    ld = ShardLoader(ShardSet.open(shards), "train", FailingKeys(preprocess_for(CLASSES, 8, False), {bad}), rank=0,
                     world_size=1, batch_size=4, num_workers=0, mode="eval", seed=0, shuffle_buffer=0,
                     max_bad_sample_rate=0.1)
    for epoch in range(3):
        ld.set_epoch(epoch)
        assert len(_keys(ld)) == 14
        summary = ld.end_epoch()
        assert summary["bad"] == 1 and summary["planned"] == 15 and summary["epoch"] == epoch
    assert len(ld.bad_samples) == 3  # the whole ledger keeps every pass
