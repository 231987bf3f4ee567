"""The data position of a training epoch (`data.position`): a loader stopped part-way records what each
(rank, worker) slot consumed; a loader resumed from it yields exactly the rest, in the uninterrupted order when
the layout is the same, and the unconsumed samples dealt anew (each once) when world size or workers change."""
from __future__ import annotations

import itertools

import pytest
import torch

from mmlnb_dist.data.loader import ShardLoader
from mmlnb_dist.data.position import DataPosition
from mmlnb_dist.data.shardset import ShardError, ShardSet
from mmlnb_dist.recipes.fusion.steps import preprocess_for

from support.shards import make_shard_set

CLASSES = ["UD", "PD", "D"]
BATCH = 3


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    # 48 train samples over 10 shards of <= 5: slots start and stop inside shards
    return make_shard_set(tmp_path_factory.mktemp("position"), per_class=20, max_per_shard=5)


def train_loader(shards, rank, world, workers, epoch=1):
    ld = ShardLoader(ShardSet.open(shards), "train", preprocess_for(CLASSES, 16, augment=False), rank=rank,
                     world_size=world, batch_size=BATCH, num_workers=workers, mode="train", seed=3, shuffle_buffer=8,
                     epoch_samples=48)
    ld.set_epoch(epoch)
    return ld


def stop_after(shards, world, workers, taken):
    """Each rank reads `taken` batches, then stops: (the DataPosition a checkpoint records, keys consumed)."""
    return stop_resumed(shards, world, workers, taken, None)


def stop_resumed(shards, world, workers, taken, resume):
    """As `stop_after`, for loaders resumed from `resume` (None: a fresh epoch)."""
    consumed, batches, keys = {}, {}, []
    for rank in range(world):
        ld = train_loader(shards, rank, world, workers)
        ld.resume_from(resume)
        keys += [k for b in itertools.islice(iter(ld), taken) for k in b["key"]]
        part = ld.data_position()
        consumed.update(part["consumed"])
        batches.update(part["batches"])
    return DataPosition(epoch=1, step_in_epoch=taken, world_size=world, num_workers=workers, micro_batch=BATCH,
                        accumulation=1, epoch_positions=part["epoch_positions"], consumed=consumed, batches=batches,
                        before_redeal=part["before_redeal"]), keys


def full_epoch(shards, world, workers):
    return {rank: list(train_loader(shards, rank, world, workers)) for rank in range(world)}


def test_same_layout_resumes_with_exactly_the_remaining_batches_in_order(shards):
    full = full_epoch(shards, 2, 2)
    position, _ = stop_after(shards, 2, 2, taken=3)
    assert sorted(position.consumed) == ["0/0", "0/1", "1/0", "1/1"]
    assert sum(len(p) for p in position.consumed.values()) == 2 * 3 * BATCH
    for rank in range(2):
        ld = train_loader(shards, rank, 2, 2)
        ld.resume_from(position)
        rest = list(ld)
        assert len(ld) == len(rest) == len(full[rank]) - 3
        for got, want in zip(rest, full[rank][3:]):
            assert got["key"] == want["key"]
            assert torch.equal(got["image"], want["image"]) and torch.equal(got["label"], want["label"])
        # after the resumed epoch the loader's position covers the whole epoch of this rank, skipped batches included
        assert sum(ld.data_position()["batches"].values()) == len(full[rank])
    # another epoch is not affected by the resume
    ld = train_loader(shards, 0, 2, 2, epoch=2)
    ld.resume_from(position)
    assert len(ld) == len(full[0])


class CountingDecode:
    """The fusion preprocess, recording the key of every sample it decodes (in-process loaders only)."""

    def __init__(self, inner):
        self.inner, self.decoded = inner, []

    def decode(self, sample, context):
        self.decoded.append(sample["__key__"])
        return self.inner.decode(sample, context)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_same_layout_resume_does_not_decode_the_batches_it_skips(tmp_path):
    """The dropped batches' samples are read, not decoded; the bad samples among them are decoded again, so the
    resumed epoch's ledger is the uninterrupted one's, and the batches after the checkpoint are the same."""
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.writer import write_tar_shard

    shards = make_shard_set(tmp_path, per_class=20, max_per_shard=5)
    manifest = ShardSet.open(shards)
    for path, _ in manifest.shards("train")[:6]:  # one bad image in each of six shards: some land before the stop
        samples = list(iter_shard_samples(path))
        samples[2]["png"] = b"\x89PNG\r\n\x1a\ngarbage"
        write_tar_shard(path, samples, CLASSES)

    def loader():
        ld = ShardLoader(ShardSet.open(shards), "train", CountingDecode(preprocess_for(CLASSES, 16, augment=False)),
                         rank=0, world_size=1, batch_size=BATCH, num_workers=0, mode="train", seed=3,
                         shuffle_buffer=8, epoch_samples=48, max_bad_sample_rate=0.2)
        ld.set_epoch(1)
        return ld

    full = loader()
    whole = list(full)
    first = loader()
    taken = list(itertools.islice(iter(first), 8))
    assert first.bad_samples  # the stretch the resume skips holds bad samples
    part = first.data_position()
    position = DataPosition(epoch=1, step_in_epoch=8, world_size=1, num_workers=0, micro_batch=BATCH,
                            accumulation=1, epoch_positions=part["epoch_positions"], consumed=part["consumed"],
                            batches=part["batches"], before_redeal=None)
    resumed = loader()
    resumed.resume_from(position)
    rest = list(resumed)
    assert [b["key"] for b in taken + rest] == [b["key"] for b in whole]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(rest, whole[8:]))
    assert resumed.bad_samples == full.bad_samples  # the same ledger, skipped stretch included
    bad_keys = [b.key for b in resumed.bad_samples]
    assert sorted(resumed.preprocess.decoded) == sorted([k for b in rest for k in b["key"]] + bad_keys)


@pytest.mark.parametrize("saved,resumed", [((2, 2), (1, 2)), ((1, 2), (2, 2)), ((2, 2), (2, 0)), ((1, 0), (2, 1))],
                         ids=["2->1", "1->2", "workers 2->0", "1x0->2x1"])
def test_other_layout_deals_the_rest_anew_each_sample_once(shards, saved, resumed):
    world, workers = saved
    taken = 2 if world == 2 else 4
    epoch_keys = sorted(k for batches in full_epoch(shards, world, workers).values() for b in batches for k in b["key"])
    position, before = stop_after(shards, world, workers, taken)
    after = []
    new_world, new_workers = resumed
    for rank in range(new_world):
        ld = train_loader(shards, rank, new_world, new_workers)
        ld.resume_from(position)
        batches = list(ld)
        assert len(batches) == len(ld)
        after += [k for b in batches for k in b["key"]]
    assert len(before) == taken * world * BATCH
    assert sorted(before + after) == epoch_keys  # every key of the epoch once, none twice
    assert len(epoch_keys) == len(set(epoch_keys)) == 48


@pytest.mark.parametrize("resumed", [(2, 2), (1, 2)], ids=["same layout", "dealt anew"])
def test_num_samples_of_a_resumed_epoch_counts_what_it_yields(shards, resumed):
    """`num_samples` (samples this rank yields this epoch) counted the batches a same-layout resume skips."""
    position, _ = stop_after(shards, 2, 2, taken=3)
    world, workers = resumed
    for rank in range(world):
        ld = train_loader(shards, rank, world, workers)
        ld.resume_from(position)
        expected = ld.num_samples
        assert expected == sum(len(b["key"]) for b in ld)


def test_a_resume_chain_2_to_1_to_1_to_2_sees_each_key_once(shards):
    """Dealt anew (2 -> 1), checkpointed again and resumed with the same layout (1 -> 1: the re-deal is replayed,
    then skipped into), then dealt anew again (1 -> 2): the four pieces together are the epoch, once."""
    epoch_keys = sorted(k for batches in full_epoch(shards, 2, 2).values() for b in batches for k in b["key"])
    first, keys1 = stop_after(shards, 2, 2, taken=2)
    second, keys2 = stop_resumed(shards, 1, 2, 3, first)
    assert second.before_redeal == sorted(first.consumed_positions())
    third, keys3 = stop_resumed(shards, 1, 2, 1, second)
    assert third.before_redeal == second.before_redeal
    keys4 = []
    for rank in range(2):
        ld = train_loader(shards, rank, 2, 1)
        ld.resume_from(third)
        keys4 += [k for b in ld for k in b["key"]]
    assert sorted(keys1 + keys2 + keys3 + keys4) == epoch_keys
    # the same-layout resume re-read (and dropped) what `second` had consumed: its position covers that too
    for slot, positions in second.consumed.items():
        assert third.consumed[slot][:len(positions)] == positions


def test_a_replay_that_reads_other_samples_is_refused(shards):
    position, _ = stop_after(shards, 1, 0, taken=2)
    position.consumed["0/0"] = list(reversed(position.consumed["0/0"]))  # not what this order reads
    ld = train_loader(shards, 0, 1, 0)
    ld.resume_from(position)
    with pytest.raises(ShardError, match="re-read other samples"):
        list(ld)


def test_position_round_trips_through_client_state():
    pos = DataPosition(epoch=2, step_in_epoch=5, world_size=2, num_workers=1, micro_batch=4, accumulation=2,
                       epoch_positions=10, consumed={"0/0": [0, 3], "1/0": [5]}, batches={"0/0": 1, "1/0": 1})
    state = pos.to_state()
    assert state["granularity"] == "step" and state["next_epoch"] == 2
    again = DataPosition.from_state(state)
    assert again == pos and again.remaining() == [1, 2, 4, 6, 7, 8, 9]
