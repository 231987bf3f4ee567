"""Audit of the streaming loader (`data.stream`, `data.loader`): evaluation is never augmented, the seeded shuffle
shuffles even when its buffer holds the whole range, replacements for bad samples are recorded but not counted
against the budget, a split with no readable sample stops instead of reading on for ever, and bad arguments are
refused."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.data.loader import BadSampleRateError, ShardLoader
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.data.stain_augment import StainAugmentConfig
from mmlnb_dist.recipes.fusion.steps import preprocess_for

from support.shards import CLASSES, FailingKeys, make_shard_set


def _loader(shards, preprocess, mode="train", rank=0, world=1, epoch=0, **kw):
    opts = dict(batch_size=4, num_workers=0, seed=0, shuffle_buffer=0)
    opts.update(kw)
    ld = ShardLoader(ShardSet.open(shards), "train", preprocess, rank=rank, world_size=world, mode=mode, **opts)
    ld.set_epoch(epoch)
    return ld


def _keys(ld):
    return [k for b in ld for k in b["key"]]


@pytest.fixture
def one_shard(tmp_path):
    """12 samples in a single shard (so the shard order cannot hide a missing in-shard shuffle)."""
    return make_shard_set(tmp_path, per_class=4, max_per_shard=100, val_fraction=0.0)


def test_evaluation_is_never_augmented_even_by_an_augmenting_preprocess(one_shard):
    """Flips, rotations and stain jitter are for training only: an eval pass gives the plain images."""
    hed = StainAugmentConfig(kind="hed", sigma=0.2, bias=0.05)
    plain = {k: im for b in _loader(one_shard, preprocess_for(CLASSES, 16, False), mode="eval")
             for k, im in zip(b["key"], b["image"])}
    augmenting = preprocess_for(CLASSES, 16, True, stain=hed)
    evaluated = {k: im for b in _loader(one_shard, augmenting, mode="eval", epoch=3)
                 for k, im in zip(b["key"], b["image"])}
    assert sorted(evaluated) == sorted(plain) and len(plain) == 12
    assert all(torch.equal(evaluated[k], plain[k]) for k in plain)
    # and the same preprocess does augment in training (the comparison above is not vacuous)
    trained = {k: im for b in _loader(one_shard, augmenting, epoch=3) for k, im in zip(b["key"], b["image"])}
    assert any(not torch.equal(trained[k], plain[k]) for k in plain)


def test_a_buffer_larger_than_the_range_still_shuffles_and_differently_each_epoch(one_shard):
    """A shuffle buffer that never fills must still shuffle (its contents are shuffled at the end)."""
    pre = preprocess_for(CLASSES, 16, False)
    manifest_order = _keys(_loader(one_shard, pre, mode="eval"))
    orders = [_keys(_loader(one_shard, pre, epoch=e, shuffle_buffer=1000)) for e in (0, 1)]
    assert all(sorted(o) == sorted(manifest_order) for o in orders)  # each sample once per epoch
    assert orders[0] != manifest_order and orders[1] != manifest_order
    assert orders[0] != orders[1]
    assert orders[0] == _keys(_loader(one_shard, pre, epoch=0, shuffle_buffer=1000))  # seeded


def test_eval_reads_in_manifest_order_every_epoch(one_shard, tmp_path):
    """Evaluation reads the split in manifest order, whatever the epoch (no epoch-seeded shard order)."""
    shards = make_shard_set(tmp_path / "many", per_class=4, max_per_shard=3, val_fraction=0.0)
    pre = preprocess_for(CLASSES, 16, False)
    m = ShardSet.open(shards).manifest
    from mmlnb_dist.data.reader import iter_shard_samples

    expected = [s["__key__"] for e in m["splits"]["train"]["shards"] for s in iter_shard_samples(shards / e["file"])]
    for epoch in (0, 1, 2):
        assert _keys(_loader(shards, pre, mode="eval", epoch=epoch)) == expected


def test_a_bad_replacement_is_recorded_but_not_counted_against_the_budget(one_shard):
    """A bad sample read as a replacement (past the slot's range) is in the ledger but belongs to the slot that owns
    it: counting it here too would count it twice and stop a run that is within its budget."""
    pre = preprocess_for(CLASSES, 16, False)
    first_of_rank1 = _keys(_loader(one_shard, pre, rank=1, world=2))[0]
    first_of_rank0 = _keys(_loader(one_shard, pre, rank=0, world=2))[0]
    failing = FailingKeys(pre, {first_of_rank0, first_of_rank1})
    # 1 counted of 12 planned = 0.083 is within 0.1; counting the replacement too (2/12) would not be
    ld = _loader(one_shard, failing, rank=0, world=2, max_bad_sample_rate=0.1)
    keys = _keys(ld)
    assert len(keys) == 6 and first_of_rank0 not in keys and first_of_rank1 not in keys
    assert [(b.key, b.replacement) for b in ld.bad_samples] == [(first_of_rank0, False), (first_of_rank1, True)]
    assert ld.ledger_summary()["bad"] == 1


def test_a_split_with_no_readable_sample_stops_even_with_no_budget(one_shard):
    """Training replaces bad samples by reading on; with every sample bad and a budget of 1.0 it must still stop
    (BadSampleRateError), not read the split round and round for ever."""
    failing = FailingKeys(preprocess_for(CLASSES, 16, False), None, limit=20000)
    with pytest.raises(BadSampleRateError):
        list(_loader(one_shard, failing, max_bad_sample_rate=1.0))


@pytest.mark.parametrize("kw, match", [
    (dict(rank=2, world=2), "outside world size"),
    (dict(rank=-1, world=2), "outside world size"),
    (dict(batch_size=0), "batch_size"),
    (dict(world=4, epoch_samples=3), "smaller than world_size"),
    (dict(mode="test"), "mode must be"),
])
def test_bad_loader_arguments_are_refused(one_shard, kw, match):
    """A rank outside the world, an empty batch or an epoch smaller than the world is refused up front."""
    with pytest.raises(ValueError, match=match):
        _loader(one_shard, preprocess_for(CLASSES, 16, False), **kw)


def test_bad_samples_after_a_slot_s_last_full_batch_reach_the_ledger(one_shard):
    """Eval: bad samples read after the last complete batch travel with the end-of-stream message; they are in the
    ledger, not dropped."""
    pre = preprocess_for(CLASSES, 16, False)
    order = _keys(_loader(one_shard, pre, mode="eval"))
    ld = _loader(one_shard, FailingKeys(pre, order[-2:]), mode="eval", batch_size=5, max_bad_sample_rate=0.5)
    assert _keys(ld) == order[:10]
    assert sorted(b.key for b in ld.bad_samples) == sorted(order[-2:])
    assert ld.ledger_summary()["bad"] == 2


def test_a_rank_over_budget_stops_at_the_end_of_its_pass_even_when_no_worker_alone_is(one_shard):
    """One bad sample in each of two workers' ranges: neither worker alone exceeds the budget (1/12), the rank's
    pass does (2/12), and iterating the loader raises instead of leaving it to a later `end_epoch`."""
    pre = preprocess_for(CLASSES, 16, False)
    order = _keys(_loader(one_shard, pre, mode="eval"))
    failing = FailingKeys(pre, {order[0], order[6]})
    with pytest.raises(BadSampleRateError, match="2 bad samples of 12"):
        list(_loader(one_shard, failing, mode="eval", num_workers=2, max_bad_sample_rate=0.1))
    ld = _loader(one_shard, failing, mode="eval", num_workers=2, max_bad_sample_rate=0.2)
    assert len(_keys(ld)) == 10 and ld.ledger_summary()["bad"] == 2


def test_end_epoch_enforces_the_budget_when_the_pass_was_not_iterated_to_its_end(one_shard):
    """The recipes take `len(loader)` batches and never reach the generator's end, so the budget of that pass is
    decided by `end_epoch`: 2 of 12 over a 0.1 budget raises there (and is reported), 1 of 12 does not."""
    pre = preprocess_for(CLASSES, 16, False)
    order = _keys(_loader(one_shard, pre, mode="eval"))
    for bad, raises in (({order[0], order[6]}, True), ({order[0]}, False)):
        ld = _loader(one_shard, FailingKeys(pre, bad), mode="eval", num_workers=2, max_bad_sample_rate=0.1)
        it = iter(ld)
        for _ in range(len(ld)):
            next(it)
        if raises:
            with pytest.raises(BadSampleRateError, match="2 bad samples of 12"):
                ld.end_epoch(None, None)
        else:
            assert ld.end_epoch(None, None)["bad"] == 1
