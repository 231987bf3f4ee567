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
