"""A shard set whose descriptions cover only some patches (a descriptions file missing rows): the manifest counts
the described samples per shard, and a fusion run with a text branch is refused naming the shards, instead of
training that branch on empty strings for the rest (`has_descriptions` only says some sample has one)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.data.build import build_shards
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.recipes.fusion.checks import check_text_available

from support.shards import CLASSES, specs_for, write_patch_folder


def _cfg(mode):
    return SimpleNamespace(fusion=SimpleNamespace(model=SimpleNamespace(mode=mode)))


def _build(tmp_path, describe_every=1, undescribed=(), val_fraction=0.0, out="shards"):
    specs = specs_for(write_patch_folder(tmp_path / "src", per_class=6, size=16))
    for i, spec in enumerate(specs):
        if i % describe_every or spec.key in undescribed:
            spec.description = None
    build = BuildConfig(max_samples_per_shard=4, val_fraction=val_fraction, test_fraction=0.0, image_format="png",
                        image_size=16)
    build_shards(specs, tmp_path / out, build, CLASSES, progress=False)
    return ShardSet.open(tmp_path / out)


def _described_in(shards, split):
    return sum(1 for path, _ in shards.shards(split) for s in iter_shard_samples(path) if s.get("txt", b"").strip())


def test_the_manifest_counts_described_samples_and_training_refuses_a_partial_set(tmp_path):
    shards = _build(tmp_path, describe_every=3)
    assert shards.has_descriptions
    assert shards.num_described("train") == _described_in(shards, "train") == 6
    undescribed = shards.undescribed_shards("train")
    assert sum(n for _, n in undescribed) == 12 and all(name.startswith("train-") for name, _ in undescribed)
    with pytest.raises(ConfigError, match=r"carry no description \(train 12 of 18; .*train-000000\.tar"):
        check_text_available(_cfg("prmf"), shards)
    check_text_available(_cfg("image_only"), shards)  # images alone need no text


def test_a_fully_described_set_trains(tmp_path):
    shards = _build(tmp_path, describe_every=1)
    assert shards.num_described("train") == shards.num_samples("train") == 18
    assert shards.undescribed_shards("train") == []
    check_text_available(_cfg("prmf"), shards)


def test_a_val_split_described_in_part_is_refused_too(tmp_path):
    """Train fully described, val not: val metrics would score the text branch on empty strings."""
    first = _build(tmp_path, val_fraction=0.34)
    val_keys = {s["__key__"] for path, _ in first.shards("val") for s in iter_shard_samples(path)}
    shards = _build(tmp_path, undescribed=val_keys, val_fraction=0.34, out="partial")
    assert shards.num_described("train") == shards.num_samples("train") and shards.num_described("val") == 0
    with pytest.raises(ConfigError, match=rf"carry no description \(val {len(val_keys)} of {len(val_keys)}; "
                                          r"shards, samples without: val-000000\.tar"):
        check_text_available(_cfg("concat"), shards)


def test_verify_checks_the_described_count_against_the_shard(tmp_path):
    import json

    from mmlnb_dist.data.verify import verify_shards

    shards = _build(tmp_path, describe_every=3)
    assert verify_shards(shards.root, progress=False).ok
    manifest = json.loads((shards.root / "manifest.json").read_text())
    entry = manifest["splits"]["train"]["shards"][0]
    claimed, entry["num_described"] = entry["num_described"], entry["num_samples"]  # a hand edit: "all described"
    (shards.root / "manifest.json").write_text(json.dumps(manifest))
    problems = verify_shards(shards.root, progress=False).problems
    assert problems == [f"train-000000.tar: {claimed} samples with a description, manifest says {entry['num_samples']}"]


def test_evaluating_a_text_model_on_a_split_described_in_part_is_refused(tmp_path):
    """`evaluate` runs no training check: a val split without text for some samples scored them on empty text."""
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.recipes.fusion.evaluate import _evaluate

    first = _build(tmp_path, val_fraction=0.34)
    val_keys = sorted(s["__key__"] for path, _ in first.shards("val") for s in iter_shard_samples(path))
    shards = _build(tmp_path, undescribed=val_keys[:2], val_fraction=0.34, out="partial")
    cfg = SimpleNamespace(data=SimpleNamespace(shards=str(shards.root)))
    model = SimpleNamespace(text_encoder=object())
    with pytest.raises(UserError, match=rf"samples of the val split .* carry none \(val 2 of {len(val_keys)}; "
                                        r"shards, samples without: val-000000\.tar"):
        _evaluate(cfg, model, CLASSES, "val", 16, None, None)
