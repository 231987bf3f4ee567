"""`ShardSet`: the manifest opened once, with one clear error for each way a folder is not a usable shard set,
and the same empty-split error wherever a split is required (training, evaluation, fine-tuning)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlnb_dist.data.shardset import ShardError, ShardSet
from support.shards import make_shard_set

ROOT = Path(__file__).resolve().parents[2]


def test_open_reads_the_manifest_once_with_its_digest(tmp_path):
    import hashlib

    shards = ShardSet.open(make_shard_set(tmp_path, per_class=4))
    assert shards.classes == ["UD", "PD", "D"]
    assert shards.digest == hashlib.sha256((shards.root / "manifest.json").read_bytes()).hexdigest()
    assert sum(n for _, n in shards.shards("train")) == shards.num_samples("train") > 0
    specs = shards.dataset_specs()
    assert {s["context"] for s in specs} == set(shards.manifest["splits"])
    assert all(s["profile"]["manifest_sha256"] == shards.digest for s in specs)


@pytest.mark.parametrize("damage,message", [
    ("missing_folder", "shard folder not found"),
    ("no_manifest", "is not a shard set"),
    ("bad_json", "is not valid JSON"),
    ("wrong_format", "not a mmlnb-shards/1 manifest"),
    ("no_classes", "missing field 'classes'"),
])
def test_each_broken_folder_gets_one_error_naming_it(tmp_path, damage, message):
    root = tmp_path / "shards"
    if damage != "missing_folder":
        root.mkdir()
    manifest = {"format": "mmlnb-shards/1", "classes": ["a", "b"], "splits": {}}
    if damage == "bad_json":
        (root / "manifest.json").write_text("{not json")
    elif damage == "wrong_format":
        (root / "manifest.json").write_text(json.dumps({**manifest, "format": "other/1"}))
    elif damage == "no_classes":
        (root / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "classes"}))
    with pytest.raises(ShardError, match=message) as err:
        ShardSet.open(root)
    assert str(root) in str(err.value)


def test_an_empty_split_is_named_with_its_remedy(tmp_path):
    shards = ShardSet.open(make_shard_set(tmp_path, per_class=4, val_fraction=0.0))
    with pytest.raises(ShardError) as err:
        shards.require_split("val", "to pick the best checkpoint")
    text = str(err.value)
    assert "'val'" in text and str(shards.root) in text and "data.build.val_fraction" in text


def test_training_without_a_val_split_stops_before_work_with_that_error(tmp_path, capsys):
    from mmlnb_dist.cli import main

    shards = make_shard_set(tmp_path, per_class=4, val_fraction=0.0)
    code = main(["train", "--config", str(ROOT / "launch/profiles/cpu-demo.yaml"), f"data.shards={shards}",
                 f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[stdout]"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("has no 'val' samples") == 1 and "data.shards" in err
    assert not (tmp_path / "runs").exists()
