"""A training epoch deals `split // world_size` samples to each rank and drops the rest. The dropped positions were
always the tail of a shard, and of a one-shard split (every split under data.build.max_samples_per_shard=1000) the
very same samples, epoch after epoch: 9 samples on 2 ranks never trained on the 9th at all. Each shuffled cycle of
the sequence is now rotated by a seeded offset, so the dropped samples change from epoch to epoch while an epoch
still reads each sample at most once, and a same-seed epoch is still the same."""
from __future__ import annotations

import itertools

from mmlnb_dist.data.loader import ShardLoader
from mmlnb_dist.data.position import sequence_segments
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.recipes.fusion.steps import preprocess_for

from support.shards import make_shard_set

CLASSES = ["UD", "PD", "D"]


def epoch_keys(shards, epoch, world=2):
    keys = []
    for rank in range(world):
        ld = ShardLoader(ShardSet.open(shards), "train", preprocess_for(CLASSES, 8, augment=False), rank=rank,
                         world_size=world, batch_size=2, num_workers=0, mode="train", seed=0, shuffle_buffer=4)
        ld.set_epoch(epoch)
        keys += [k for b in ld for k in b["key"]]
    return keys


def test_a_one_shard_split_drops_other_samples_each_epoch_and_trains_every_one(tmp_path):
    shards = make_shard_set(tmp_path, per_class=3, max_per_shard=1000, val_fraction=0.0, size=16)  # 9 samples
    entries = ShardSet.open(shards).manifest["splits"]["train"]["shards"]
    assert len(entries) == 1
    every = {s["__key__"] for s in iter_shard_samples(shards / entries[0]["file"])}
    dropped, trained = [], set()
    for epoch in range(6):
        keys = epoch_keys(shards, epoch)
        assert len(keys) == len(set(keys)) == 8 and set(keys) <= every  # each sample at most once
        dropped.append(every - set(keys))
        trained |= set(keys)
    assert trained == every, f"never trained: {every - trained}"
    assert len({frozenset(d) for d in dropped}) > 1
    assert epoch_keys(shards, 3) == epoch_keys(shards, 3)  # same seed and epoch: the same epoch


def test_a_rotated_cycle_covers_each_sample_of_every_shard_once():
    counts = [2, 5, 3, 4]
    for epoch in range(8):
        covered = []
        segs = sequence_segments(counts, start=0, seed=7, epoch=epoch, shuffle=True)
        total = 0
        for j, first, end in segs:
            take = min(end - first, sum(counts) - total)
            covered += [(j, i) for i in range(first, first + take)]
            total += take
            if total == sum(counts):
                break
        assert sorted(covered) == [(j, i) for j, n in enumerate(counts) for i in range(n)]
        # starting mid-cycle continues the same sequence
        tail = list(itertools.islice(sequence_segments(counts, start=6, seed=7, epoch=epoch, shuffle=True), 1))[0]
        flat = [p for j, first, end in itertools.islice(sequence_segments(counts, 0, 7, epoch, True), 8)
                for p in [(j, i) for i in range(first, end)]]
        assert (tail[0], tail[1]) == flat[6]
