"""A run resumes on its shard set moved to another folder: the config names `data.shards` by path, but what the run
trained on is the set of patches (the manifest digest `datasets.json` recorded). The path change is allowed and
recorded in `resume_changes.json` when the digests agree, and the resumed run ends with the weights of an
uninterrupted one; a new path holding other patches is still refused, naming `data.shards`."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from support.fusion import checkpoint_weights, epoch_records, make_shards, tiny_config

ONE_PHASE = ["fusion.curriculum.ramp_start=0", "fusion.curriculum.ramp_end=1",
             "fusion.curriculum.phases=[{start_epoch: 0}]"]


def _first_epoch(tmp_path):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    shards = make_shards(tmp_path / "a", n=48, size=32)
    run(FusionRecipe, tiny_config(shards, tmp_path / "runs", "r", ["train.epochs=1", *ONE_PHASE]))
    return shards, tmp_path / "runs" / "r"


def test_a_shard_set_moved_to_another_folder_resumes_and_the_move_is_recorded(tmp_path):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    shards, run_dir = _first_epoch(tmp_path)
    moved = tmp_path / "moved" / "shards"
    moved.parent.mkdir()
    shutil.move(str(shards), str(moved))
    result = run(FusionRecipe, tiny_config(moved, tmp_path / "runs", "r",
                                           ["train.epochs=2", "run.resume=true", *ONE_PHASE]))
    assert str(result["run_dir"]) == str(run_dir)
    changed = json.loads((run_dir / "resume_changes.json").read_text())["resumes"][-1]["changed"]
    assert changed["data.shards"] == [str(shards), str(moved)]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("epoch-")) == \
        ["epoch-0000", "epoch-0001"]
    assert [r["epoch"] for r in epoch_records(run_dir)] == [0, 1]  # continued at epoch 1, not started over
    # the same patches in another folder: the result of an uninterrupted run on them
    run(FusionRecipe, tiny_config(moved, tmp_path / "runs", "whole", ["train.epochs=2", *ONE_PHASE]))
    a = checkpoint_weights(run_dir / "checkpoints", "epoch-0001")
    b = checkpoint_weights(tmp_path / "runs" / "whole" / "checkpoints", "epoch-0001")
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []


def test_another_folder_holding_other_patches_is_refused_naming_data_shards(tmp_path):
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    shards, run_dir = _first_epoch(tmp_path)
    other = make_shards(tmp_path / "b", n=48, size=32, seed=1)
    shutil.rmtree(shards)
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    with pytest.raises(UserError, match=r"(?s)other shards than data\.shards holds now.*"
                                        r"train: trained on .*/a/shards.*now .*/b/shards"):
        run(FusionRecipe, tiny_config(other, tmp_path / "runs", "r",
                                      ["train.epochs=2", "run.resume=true", *ONE_PHASE]))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before
    assert not (run_dir / "resume_changes.json").exists()
