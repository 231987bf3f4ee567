"""No search trial is evaluated on the test split.

A trial that finished evaluated its best checkpoint on the test split too, so `trials.csv`, each trial's metrics and
MLflow child run carried test numbers for every configuration of the search: picking a configuration by them (it
takes one sort of the table) tunes on the test split. Trials now stop at validation (`train.evaluate_test=false`,
set by the search for every trial); `train`, the pipeline's evaluate stage and `ablate` (whose table is on test and
which selects nothing) still report test."""
from __future__ import annotations

import json

from support.fusion import make_shards, tiny_config

from mmlnb_dist.core.recipe import run
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe
from mmlnb_dist.tuning.trial import trial_config


def test_every_search_trial_is_configured_to_stay_off_the_test_split(tmp_path):
    ctx = {"base": {"train": {"epochs": 2}}, "space": {}, "name": "s", "trials_dir": str(tmp_path), "uri": "u",
           "parent_run_id": None, "cache_dir": str(tmp_path / "cache")}
    cfg = trial_config({}, ctx, "t1")["cfg"]
    assert cfg["train"]["evaluate_test"] is False and cfg["train"]["epochs"] == 2


def test_a_run_told_to_stay_off_the_test_split_has_no_test_numbers(tmp_path):
    shards = make_shards(tmp_path, n=45, size=32, test_fraction=0.2)
    extra = ["train.epochs=1", "data.loader.image_size=32"]
    off = tiny_config(shards, tmp_path / "runs", "kept-off", extra + ["train.evaluate_test=false"])
    kept_off = run(FusionRecipe, off)
    assert not [k for k in kept_off if k.startswith("test/")] and "val/balanced_accuracy" in kept_off
    written = json.loads((tmp_path / "runs" / "kept-off" / "metrics.json").read_text())
    assert not [k for k in written if k.startswith("test/")]
    default = run(FusionRecipe, tiny_config(shards, tmp_path / "runs", "default", extra))
    assert "test/balanced_accuracy" in default  # `train` still reports test
