"""Mutation audit of the epoch arithmetic a mid-epoch resume rests on (`data.position`) and of the bad-sample
ledger's budget (`data.ledger`): batch sizes, slot ranges, the global sequence's segments, the positions left
and how they are dealt anew, the budget's boundary and which entries count."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from mmlnb_dist.data.ledger import BadSample, exceeds, report, summarize
from mmlnb_dist.data.position import (DataPosition, ResumePlan, eval_ranges, redeal_slot, sequence_segments,
                                      train_batch_sizes)


def test_train_batch_sizes_end_with_the_remainder_batch():
    assert train_batch_sizes(10, 3) == [3, 3, 3, 1]
    assert train_batch_sizes(9, 3) == [3, 3, 3]
    assert train_batch_sizes(2, 3) == [2]


def test_eval_ranges_cover_every_index_once_however_uneven():
    for total, slots in [(10, 3), (7, 4), (3, 5), (0, 2)]:
        ranges = eval_ranges(total, slots)
        assert len(ranges) == slots
        assert [i for a, b in ranges for i in range(a, b)] == list(range(total)), (total, slots)
    assert eval_ranges(10, 3) == [(0, 3), (3, 6), (6, 10)]


def test_sequence_segments_start_mid_shard_and_at_a_shard_boundary():
    """Unshuffled: the shards in order from `start`; a start on a boundary yields no empty piece of the shard
    before it; the next cycle starts from each shard's first sample."""
    segs = sequence_segments([3, 4, 2], start=4, seed=0, epoch=0, shuffle=False)
    assert [next(segs) for _ in range(4)] == [(1, 1, 4), (2, 0, 2), (0, 0, 3), (1, 0, 4)]
    segs = sequence_segments([3, 4, 2], start=3, seed=0, epoch=0, shuffle=False)
    assert [next(segs) for _ in range(2)] == [(1, 0, 4), (2, 0, 2)]
    segs = sequence_segments([3, 4, 2], start=9 + 8, seed=0, epoch=0, shuffle=False)  # second cycle, position 8
    assert next(segs) == (2, 1, 2)


def test_shuffled_sequence_follows_the_seeded_permutation_of_each_cycle():
    """Each cycle: the shards in the seeded permutation, rotated by the seeded offset drawn after it."""
    counts = [2, 5, 3, 4]
    start = sum(counts) + 6  # cycle 1, position 6

    def cycle_samples(cycle):
        rng = np.random.default_rng([7, 2, cycle])
        laid = [(int(j), i) for j in rng.permutation(4) for i in range(counts[j])]
        offset = int(rng.integers(sum(counts)))
        return laid[offset:] + laid[:offset]

    expected = cycle_samples(1)[6:] + cycle_samples(2)
    segs = sequence_segments(counts, start=start, seed=7, epoch=2, shuffle=True)
    got = []
    while len(got) < len(expected):
        j, first, end = next(segs)
        got += [(j, i) for i in range(first, end)]
    assert got[:len(expected)] == expected


def _position(**kw):
    base = dict(epoch=2, step_in_epoch=1, world_size=2, num_workers=1, micro_batch=2, accumulation=1,
                epoch_positions=12)
    return DataPosition(**{**base, **kw})


def test_remaining_leaves_out_positions_consumed_in_this_deal_and_earlier_ones():
    pos = _position(consumed={"0/0": [0, 1], "1/0": [6, 7]}, before_redeal=[2, 3])
    assert pos.remaining() == [4, 5, 8, 9, 10, 11]
    assert pos.deal_base() == [0, 1, 4, 5, 6, 7, 8, 9, 10, 11]
    plan = ResumePlan.for_rank(pos, rank=0, world_size=1, num_workers=1, batch_size=2)  # another layout
    assert plan.remaining == [4, 5, 8, 9, 10, 11] and plan.before == [0, 1, 2, 3, 6, 7]
    same = ResumePlan.for_rank(pos, rank=1, world_size=2, num_workers=1, batch_size=2)
    assert same.remaining == pos.deal_base() and same.expect == {0: [6, 7]}


def test_redeal_gives_each_rank_a_contiguous_share_and_its_workers_whole_batches():
    """23 positions over 2 ranks: 11 each (the last one dropped); 2 workers take batches 0, 2 and 1, 3 of
    [3, 3, 3, 2], and together the slots read every dealt position once."""
    remaining = list(range(100, 123))
    got = {(r, w): redeal_slot(remaining, r, 2, 2, 3, w) for r in range(2) for w in range(2)}
    assert got[(0, 0)] == ([100, 101, 102, 103, 104, 105], [3, 3])
    assert got[(0, 1)] == ([106, 107, 108, 109, 110], [3, 2])
    assert got[(1, 0)] == ([111, 112, 113, 114, 115, 116], [3, 3])
    assert got[(1, 1)] == ([117, 118, 119, 120, 121], [3, 2])
    three = [redeal_slot(remaining, 0, 1, 3, 4, w) for w in range(3)]  # sizes [4]*5 + [3]: workers 0 1 2 0 1 2
    assert [s for _, s in three] == [[4, 4], [4, 4], [4, 3]]
    assert sum((p for p, _ in three), []) == remaining


def test_budget_boundary_a_rate_equal_to_the_limit_passes():
    assert not exceeds(1, 10, 0.1)
    assert exceeds(2, 10, 0.1)
    assert not exceeds(0, 0, 0.0)
    assert exceeds(1, 0, 0.5)  # no positions planned: one bad sample is over any budget below 1


def test_replacements_are_listed_but_not_counted_and_the_ledger_file_names_the_split(tmp_path, caplog):
    entries = [BadSample("a.tar", "k1", "truncated", 3), BadSample("b.tar", "k2", "bad label", 3),
               BadSample("b.tar", "k3", "truncated", 3, replacement=True)]
    summary = summarize(entries, split="train", epoch=3, planned=40, limit=0.1)
    assert (summary["bad"], summary["rate"], summary["by_shard"]) == (2, 2 / 40, {"a.tar": 1, "b.tar": 1})
    assert len(summary["entries"]) == 3
    logged = {}

    class Logger:
        def log_metrics(self, metrics, step):
            logged.update(metrics, step=step)

        def log_artifact(self, path):
            logged["artifact"] = path

    with caplog.at_level(logging.INFO, logger="mmlnb_dist.data.ledger"):
        report(summary, is_main=True, run_dir=tmp_path, logger=Logger(), step=None)
    rows = [json.loads(line) for line in (tmp_path / "bad_samples.jsonl").read_text().splitlines()]
    assert [(r["split"], r["key"], r["replacement"]) for r in rows] == [
        ("train", "k1", False), ("train", "k2", False), ("train", "k3", True)]
    assert logged["data/bad_samples/train"] == 2.0 and logged["step"] == 3  # no step given: the epoch
    assert logged["data/bad_sample_rate/train"] == pytest.approx(0.05)
    report(summary, is_main=False, run_dir=tmp_path / "other", logger=Logger(), step=1)
    assert not (tmp_path / "other").exists()
