"""Audit of features/image_digests.py: the per-sample image digests an extraction records, the one digest over
them (independent of order and shard layout, but not of split, key or image), reading them back from the feature
files and from a shard set's tars, and the lines that say how two sets of samples differ.

Oracles: hashlib on the bytes written, and hand-built (split, key) -> digest tables."""
from __future__ import annotations

import hashlib

import torch

from mmlnb_dist.features.image_digests import (NO_IMAGE, image_differences, images_sha256, recorded_images,
                                               sample_image_sha256, shard_set_images)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_sample_s_digest_is_its_image_member_s_sha256_and_none_without_one():
    assert sample_image_sha256({"__key__": "a", "png": b"pixels", "txt": b"words"}) == _sha(b"pixels")
    assert sample_image_sha256({"__key__": "a", "txt": b"words", "cls": b"1"}) == NO_IMAGE == "none"


def test_the_set_digest_is_a_sha256_of_sorted_split_key_digest_lines():
    images = {("val", "b"): "d2", ("train", "a"): "d1", ("train", "c"): "d3"}
    expected = _sha(b"train\ta\td1\ntrain\tc\td3\nval\tb\td2\n")
    assert images_sha256(images) == expected
    assert images_sha256(dict(reversed(list(images.items())))) == expected  # order of the table is irrelevant


def test_the_set_digest_changes_with_split_key_or_image():
    base = {("train", "a"): "d1", ("val", "b"): "d2"}
    variants = [{("val", "a"): "d1", ("val", "b"): "d2"}, {("train", "x"): "d1", ("val", "b"): "d2"},
                {("train", "a"): "d9", ("val", "b"): "d2"}, {("train", "a"): "d1"}]
    digests = {images_sha256(base), *(images_sha256(v) for v in variants)}
    assert len(digests) == 1 + len(variants)


def test_recorded_images_reads_every_feature_file_s_split_and_digests(tmp_path):
    from mmlnb_dist.features.store import write_shard_features

    write_shard_features(tmp_path / "s0.safetensors", ["a", "b"], torch.zeros(2, 3), shard_sha256="x", skipped=[],
                         split="train", images={"a": "d1", "b": "d2"})
    write_shard_features(tmp_path / "s1.safetensors", ["c"], torch.zeros(1, 3), shard_sha256="y", skipped=[],
                         split="val", images={"c": "d3"})
    got = recorded_images(tmp_path, [{"file": "s0.safetensors"}, {"file": "s1.safetensors"}])
    assert got == {("train", "a"): "d1", ("train", "b"): "d2", ("val", "c"): "d3"}


def test_shard_set_images_hash_each_sample_s_image_bytes_under_its_split(tmp_path):
    import tarfile

    from support.shards import make_shard_set

    from mmlnb_dist.data.shardset import ShardSet

    shards = ShardSet.open(make_shard_set(tmp_path, per_class=3, max_per_shard=2, val_fraction=0.34))
    expected = {}
    for split, _, entry in shards.entries():
        with tarfile.open(shards.root / entry["file"]) as tar:
            for member in tar.getmembers():
                key, _, ext = member.name.partition(".")
                if ext == "png":
                    expected[(split, key)] = _sha(tar.extractfile(member).read())
    assert {s for s, _ in expected} == {"train", "val"} and len(expected) == 9
    assert shard_set_images(shards) == expected


def _table(n, split="train", digest="d"):
    return {(split, f"k{i}"): digest for i in range(n)}


def test_the_same_samples_have_no_differences():
    assert image_differences(_table(3), dict(_table(3))) == []


def test_a_changed_image_is_named_with_its_split():
    recorded = _table(3)
    ours = {**recorded, ("train", "k1"): "other"}
    assert image_differences(recorded, ours) == ["1 sample(s) whose image differs: k1 (train)"]


def test_a_sample_in_another_split_is_named_as_moved_only():
    recorded = _table(3)
    ours = {("train", "k0"): "d", ("val", "k1"): "d", ("train", "k2"): "d"}
    assert image_differences(recorded, ours) == ["1 sample(s) in another split than at extraction: k1 (val)"]


def test_samples_only_on_one_side_are_told_apart():
    """`missing`: this shard set has them, the features do not; `extra`: the other way round."""
    recorded = {("train", "k0"): "d", ("train", "gone"): "d"}
    ours = {("train", "k0"): "d", ("val", "new"): "d"}
    assert image_differences(recorded, ours) == [
        "1 sample(s) the features do not have: new (val)",
        "1 sample(s) the features have and this shard set does not: gone (train)"]


def test_long_lists_show_five_keys_sorted_and_count_the_rest():
    recorded = _table(7)
    ours = {k: "changed" for k in reversed(list(recorded))}  # listed sorted whatever the shards' order
    assert image_differences(recorded, ours) == [
        "7 sample(s) whose image differs: k0 (train), k1 (train), k2 (train), k3 (train), k4 (train) and 2 more"]
    five = {k: "changed" for k in _table(5)}
    assert image_differences(_table(5), five) == [
        "5 sample(s) whose image differs: k0 (train), k1 (train), k2 (train), k3 (train), k4 (train)"]


def test_every_kind_of_difference_is_reported_in_order():
    recorded = {("train", "same"): "d", ("train", "changed"): "d", ("train", "moved"): "d", ("val", "gone"): "d"}
    ours = {("train", "same"): "d", ("train", "changed"): "x", ("val", "moved"): "d", ("train", "new"): "d"}
    lines = image_differences(recorded, ours)
    assert [line.split(":")[0] for line in lines] == [
        "1 sample(s) whose image differs", "1 sample(s) in another split than at extraction",
        "1 sample(s) the features do not have", "1 sample(s) the features have and this shard set does not"]
