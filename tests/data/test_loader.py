"""The streaming loader: exactly-once eval, equal train batches per rank, seeded shuffle, bad-sample ledger."""
from __future__ import annotations


import pytest
import torch

from mmlnb_dist.config import load_config
from mmlnb_dist.data.loader import BadSampleRateError, ShardLoader, build_loader
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardError, ShardSet
from mmlnb_dist.data.writer import write_tar_shard
from mmlnb_dist.models.encoders import IMAGENET_MEAN, IMAGENET_STD
from mmlnb_dist.recipes.fusion.steps import preprocess_for

from support.shards import make_shard_set

CLASSES = ["UD", "PD", "D"]


def loader(shards, rank=0, world=1, mode="eval", split="train", workers=2, epoch=0, image_size=16, augment=None,
           **kw):
    """The fusion recipe's loader (ImageNet-normalised images, class-index labels, text) over `shards`."""
    opts = dict(batch_size=4, num_workers=workers, seed=0, shuffle_buffer=8)
    opts.update(kw)
    preprocess = preprocess_for(CLASSES, image_size, mode == "train" if augment is None else augment)
    ld = ShardLoader(ShardSet.open(shards), split, preprocess, rank=rank, world_size=world, mode=mode, **opts)
    ld.set_epoch(epoch)
    return ld


def keys_of(batches):
    return [k for b in batches for k in b["key"]]


def all_keys(shards, split="train"):
    m = ShardSet.open(shards).manifest
    return sorted(s["__key__"] for e in m["splits"][split]["shards"] for s in iter_shard_samples(shards / e["file"]))


@pytest.mark.parametrize("per_class,max_per_shard", [(10, 4), (4, 100)])  # 6 shards; 1 shard < 4 slots
def test_eval_covers_every_sample_exactly_once_across_ranks_and_workers(tmp_path, per_class, max_per_shard):
    shards = make_shard_set(tmp_path, per_class=per_class, max_per_shard=max_per_shard, val_fraction=0.0)
    seen = []
    for rank in range(2):
        ld = loader(shards, rank=rank, world=2, mode="eval", workers=2)
        batches = list(ld)
        assert len(batches) == len(ld) and sum(len(b["key"]) for b in batches) == ld.num_samples
        seen += keys_of(batches)
    assert sorted(seen) == all_keys(shards)
    assert len(ShardSet.open(shards).manifest["splits"]["train"]["shards"]) == (8 if max_per_shard == 4 else 1)


def test_batch_contents(tmp_path):
    shards = make_shard_set(tmp_path, per_class=3)
    b = next(iter(loader(shards, mode="eval", workers=0)))
    assert b["image"].shape == (4, 3, 16, 16) and b["image"].dtype == torch.float32
    assert b["label"].dtype == torch.long and set(b["label"].tolist()) <= {0, 1, 2}
    assert all(t.startswith("a ") for t in b["text"]) and b["slide_id"] == [None] * 4
    # ImageNet normalisation: values within what [0, 1] maps to.
    lo = min((0 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
    hi = max((1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD))
    assert lo - 1e-5 <= b["image"].min() and b["image"].max() <= hi + 1e-5


@pytest.mark.parametrize("per_class,max_per_shard,epoch_samples", [(10, 4, None), (4, 100, 25)])
def test_train_ranks_yield_equal_batches_and_shuffle_is_epoch_seeded(tmp_path, per_class, max_per_shard, epoch_samples):
    shards = make_shard_set(tmp_path, per_class=per_class, max_per_shard=max_per_shard, val_fraction=0.0)
    n = len(all_keys(shards))
    runs = {}
    for epoch in (0, 1):
        for rank in range(2):
            ld = loader(shards, rank=rank, world=2, mode="train", workers=2, epoch=epoch, epoch_samples=epoch_samples)
            batches = list(ld)
            runs[epoch, rank] = keys_of(batches)
            assert len(batches) == len(ld)
            assert [len(b["key"]) for b in batches] == [len(b["key"]) for b in list(
                loader(shards, rank=1 - rank, world=2, mode="train", workers=2, epoch=epoch,
                       epoch_samples=epoch_samples))], "ranks differ in batch count/sizes"
    expected = (epoch_samples or n) // 2
    assert all(len(v) == expected for v in runs.values())
    if epoch_samples is None:  # an epoch of the split's size visits each sample once
        assert sorted(runs[0, 0] + runs[0, 1]) == all_keys(shards)
    assert runs[0, 0] != runs[1, 0]  # a new order each epoch
    again = keys_of(loader(shards, rank=0, world=2, mode="train", workers=2, epoch=1, epoch_samples=epoch_samples))
    assert again == runs[1, 0]  # the same seed and epoch give the same order


def test_augmentation_is_seeded_per_epoch_and_sample(tmp_path):
    shards = make_shard_set(tmp_path, per_class=4)

    def images(epoch):
        out = {}
        for b in loader(shards, mode="train", workers=0, epoch=epoch, shuffle_buffer=0):
            out.update(zip(b["key"], b["image"]))
        return out

    a, b, c = images(0), images(0), images(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def _corrupt_one(shards, shard_name="train-000000.tar", index=1, truncate=False):
    path = shards / shard_name
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2 + 100])
        return None
    samples = list(iter_shard_samples(path))
    samples[index]["png"] = b"\x89PNG\r\n\x1a\ngarbage"
    write_tar_shard(path, samples, CLASSES)
    return samples[index]["__key__"]


def test_corrupt_image_is_skipped_and_in_the_ledger(tmp_path):
    shards = make_shard_set(tmp_path, per_class=10, max_per_shard=6, val_fraction=0.0)
    bad = _corrupt_one(shards)
    ld = loader(shards, rank=0, world=1, mode="eval", workers=2, max_bad_sample_rate=0.1)
    seen = keys_of(list(ld))
    assert bad not in seen and sorted(seen + [bad]) == all_keys(shards)
    assert [(b.shard, b.key) for b in ld.bad_samples] == [("train-000000.tar", bad)]
    # the same bad image gives the same reason in every run (PIL's message named the buffer's memory address)
    assert ld.bad_samples[0].reason == "image not decodable (UnidentifiedImageError: cannot identify image file)"
    assert bad in ld.bad_sample_report()
    # Training replaces the bad sample so batch counts stay equal.
    tl = loader(shards, rank=0, world=1, mode="train", workers=2, max_bad_sample_rate=0.1)
    assert sum(len(b["key"]) for b in tl) == 30 and len(tl.bad_samples) == 1


def test_bad_sample_rate_above_limit_stops_naming_the_shard(tmp_path):
    shards = make_shard_set(tmp_path, per_class=10, max_per_shard=6, val_fraction=0.0)
    _corrupt_one(shards)
    with pytest.raises(BadSampleRateError, match=r"train-000000\.tar"):
        list(loader(shards, mode="eval", workers=0, max_bad_sample_rate=0.01))


def test_truncated_tar_is_reported_with_the_shard_name(tmp_path):
    shards = make_shard_set(tmp_path, per_class=10, max_per_shard=6, val_fraction=0.0)
    _corrupt_one(shards, "train-000002.tar", truncate=True)
    with pytest.raises(Exception, match=r"train-000002\.tar: truncated or corrupt tar after key"):
        list(loader(shards, mode="eval", workers=2))


def test_loader_errors_and_config_convenience(tmp_path):
    shards = make_shard_set(tmp_path, per_class=3)
    with pytest.raises(ShardError, match="no split 'test'"):
        loader(shards, split="test")
    with pytest.raises(ShardError, match="not a shard set"):
        loader(tmp_path)
    cfg = load_config(None, [f"data.shards={shards}", "data.loader.num_workers=0", "data.loader.image_size=16"])
    preprocess = preprocess_for(cfg.data.classes, cfg.data.loader.image_size, augment=False)
    ld = build_loader(ShardSet.open(cfg.data.shards), "val", preprocess, cfg.data.loader, rank=0, world_size=1,
                      batch_size=2, mode="eval", seed=cfg.run.seed)
    assert sum(len(b["key"]) for b in ld) == ShardSet.open(shards).manifest["splits"]["val"]["num_samples"]
