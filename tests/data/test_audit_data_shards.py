"""Mutation audit of the shard-set plumbing: which held-out copies of train images are counted
(`ShardSet.copies_of_train`), an empty split refused, a derived manifest's counts recomputed, the pre-flight check
limited to the splits asked for, and the writer's duplicate keys, sorted JSON members and `sizes.json`."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.data.preflight import check_shard_files
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardError, ShardSet, updated_manifest
from mmlnb_dist.data.writer import as_bytes, write_manifest, write_tar_shard

from support.shards import CLASSES, make_shard_set


def _manifest(splits, **extra):
    return {"format": "mmlnb-shards/1", "classes": ["a", "b"], "splits": splits, **extra}


def test_only_held_out_copies_of_train_images_are_counted(tmp_path):
    groups = [[{"split": "train", "key": "k1", "label": "a"}, {"split": "val", "key": "k2", "label": "a"},
               {"split": "test", "key": "k3", "label": "a"}],
              [{"split": "train", "key": "k4", "label": "a"}, {"split": "test", "key": "k5", "label": "b"},
               {"split": "test", "key": "k6", "label": "b"}],
              [{"split": "val", "key": "k7", "label": "a"}, {"split": "test", "key": "k8", "label": "a"}]]
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest(
        {"train": {"shards": [], "num_samples": 0}}, duplicates={"across_splits": groups, "conflicting_labels": []})))
    assert ShardSet.open(tmp_path).copies_of_train() == {"val": 1, "test": 3}


def test_an_empty_split_is_refused_and_a_split_without_its_counts_is_a_broken_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest(
        {"train": {"shards": [], "num_samples": 4}, "val": {"shards": [], "num_samples": 0}})))
    s = ShardSet.open(tmp_path)
    assert s.require_split("train") == 4
    with pytest.raises(ShardError, match="no 'val' samples"):
        s.require_split("val")
    with pytest.raises(ShardError, match="no 'test' samples"):
        s.require_split("test")
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest({"train": {"shards": []}})))
    with pytest.raises(ShardError, match="split 'train' lacks"):
        ShardSet.open(tmp_path)


def test_a_derived_manifest_recounts_its_splits_from_the_new_entries():
    base = _manifest({"train": {"shards": [{"file": "t0"}, {"file": "t1"}], "num_samples": 9,
                                "class_counts": {"a": 5, "b": 4}}})
    new = updated_manifest(base, {("train", 0): {"file": "t0", "num_samples": 3, "class_counts": {"a": 3}},
                                  ("train", 1): {"file": "t1", "num_samples": 2, "class_counts": {"a": 1, "b": 1}}},
                           provenance={"map": 1})
    assert new["splits"]["train"]["num_samples"] == 5
    assert new["splits"]["train"]["class_counts"] == {"a": 4, "b": 1}
    assert new["provenance"] == {"map": 1} and base["splits"]["train"]["num_samples"] == 9


def test_preflight_checks_only_the_splits_asked_for(tmp_path):
    shards = make_shard_set(tmp_path, per_class=4, max_per_shard=5, val_fraction=0.25)
    s = ShardSet.open(shards)
    val = s.shards("val")[0][0]
    val.write_bytes(val.read_bytes()[:-512])
    assert check_shard_files(s, "checksum", splits=["train"]) == len(s.shards("train"))
    with pytest.raises(ShardError, match=val.name):
        check_shard_files(s, "size")


def test_writer_refuses_a_key_twice_and_sizes_json_lists_every_count(tmp_path):
    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=10, val_fraction=0.0)
    sample = list(iter_shard_samples(shards / "train-000000.tar"))[0]
    with pytest.raises(ShardError, match="duplicate sample key"):
        write_tar_shard(tmp_path / "dup.tar", [sample, dict(sample)], CLASSES)
    assert not (tmp_path / "dup.tar").exists()
    write_manifest(tmp_path, _manifest({"train": {"shards": [{"file": "a.tar", "num_samples": 3}],
                                                  "num_samples": 3},
                                        "val": {"shards": [{"file": "b.tar", "num_samples": 2}], "num_samples": 2}}))
    assert json.loads((tmp_path / "sizes.json").read_text()) == {"a.tar": 3, "b.tar": 2}


def test_member_json_is_written_with_sorted_keys_whatever_the_dict_order():
    """Equal metadata gives equal bytes (rebuilds byte-identical) however the dict was put together."""
    assert as_bytes({"b": 1, "a": "é"}) == as_bytes({"a": "é", "b": 1}) == '{"a": "é", "b": 1}'.encode()
    assert as_bytes([{"z": 0, "y": 1}]) == b'[{"y": 1, "z": 0}]'
