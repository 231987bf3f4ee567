"""A manifest whose shard entry was edited by hand (a field deleted, a count made text) stops the loader with a
`ShardError` naming the manifest, the split, the shard and the remedy, not a KeyError/TypeError traceback."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.data.loader import ShardLoader
from mmlnb_dist.data.shardset import ShardError, ShardSet

from support.shards import make_shard_set


@pytest.mark.parametrize("edit", [{"drop": "file"}, {"drop": "num_samples"}, {"num_samples": None},
                                  {"num_samples": "six"}, {"file": 7}])
def test_a_hand_edited_shard_entry_is_named_with_the_remedy(tmp_path, edit):
    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=3, val_fraction=0.0)
    manifest = json.loads((shards / "manifest.json").read_text())
    entry = manifest["splits"]["train"]["shards"][1]
    entry.pop(edit.pop("drop", None), None)
    entry.update(edit)
    (shards / "manifest.json").write_text(json.dumps(manifest))
    message = r"manifest\.json: split 'train' shard #1 .* lacks a 'file' name or a 'num_samples' count; restore"
    with pytest.raises(ShardError, match=message):
        ShardLoader(ShardSet.open(shards), "train", None, rank=0, world_size=1, batch_size=2, num_workers=0,
                    mode="train", seed=0, shuffle_buffer=0)


def test_an_intact_manifest_lists_its_shards_with_counts(tmp_path):
    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=3, val_fraction=0.0)
    listed = ShardSet.open(shards).shards("train")
    assert [(p.name, n) for p, n in listed] == [("train-000000.tar", 3), ("train-000001.tar", 3)]


def test_the_preflight_check_names_a_hand_edited_entry_too(tmp_path):
    from mmlnb_dist.data.preflight import check_shard_files

    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=3, val_fraction=0.0)
    manifest = json.loads((shards / "manifest.json").read_text())
    del manifest["splits"]["train"]["shards"][0]["file"]
    (shards / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=r"split 'train' shard #0 .* lacks a 'file' name"):
        check_shard_files(ShardSet.open(shards), "size")


@pytest.mark.parametrize("field, value, says", [
    ("classes", "UD,PD,D", r"'classes' must be a list of distinct class names \(got 'UD,PD,D'\)"),
    ("classes", ["UD", "UD", "D"], r"'classes' must be a list of distinct class names"),
    ("splits", [], r"'splits' must map each split name to its entry \(got \[\]\)"),
    ("shards", {}, r"split 'train': 'shards' must be a list of shard entries"),
])
def test_a_hand_edited_classes_or_splits_field_is_refused_on_opening(tmp_path, field, value, says):
    """A class list written as one string was read character by character (a 7-class model of 'U', 'D', ',', ...
    trained without a word); a list of splits or a dict of shards was an AttributeError traceback."""
    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=3, val_fraction=0.0)
    manifest = json.loads((shards / "manifest.json").read_text())
    if field == "shards":
        manifest["splits"]["train"]["shards"] = value
    else:
        manifest[field] = value
    (shards / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=r"manifest\.json: " + says + r".*restore the manifest or rebuild"):
        ShardSet.open(shards)


@pytest.mark.parametrize("into", ["val", "train"])
def test_a_shard_listed_twice_is_refused_naming_it_and_both_splits(tmp_path, into):
    # a hand-made manifest listing a train shard under val too scored the model on what it trained on (and listed
    # twice in train, trained it twice an epoch); the preflight check and the loader read it without a word
    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=3, val_fraction=0.0)
    manifest = json.loads((shards / "manifest.json").read_text())
    entry = manifest["splits"]["train"]["shards"][0]
    split = manifest["splits"].setdefault(into, {"shards": [], "num_samples": 0})
    split["shards"].append(dict(entry))
    split["num_samples"] += entry["num_samples"]
    (shards / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=rf"train-000000\.tar is listed twice \(split 'train' and split '{into}'\)"):
        ShardSet.open(shards)
