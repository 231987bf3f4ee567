"""A finished CLIP run resumed for more epochs is unfinished until its new finish: its old `metrics.json` (the
result of the shorter run, and what `tracking import` takes as "the run finished", `FINISHED_FILE`) went on lying
in the folder beside a config.yaml of the longer run, so a continuation killed mid-way read as a finished run of
the old epochs. The resumed training now removes it; the new finish writes it again."""
from __future__ import annotations

import json

import pytest

from support.clip import caption_shards, clip_config

ARGS = ("train.global_batch_size=8", "data.loader.augment=false")


class Killed(KeyboardInterrupt):
    pass


def test_a_continuation_killed_mid_way_leaves_no_result_of_the_shorter_run(tmp_path, monkeypatch):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.core.tracking.folder_import import FINISHED_FILE
    from mmlnb_dist.recipes import recipe_class
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    shards = caption_shards(tmp_path, n=16, size=32)
    run(recipe_class("clip"), clip_config(shards, tmp_path, *ARGS, "train.epochs=1", name="r"))
    result = tmp_path / "r" / FINISHED_FILE
    assert json.loads(result.read_text())["epochs_trained"] == 1

    def killed(self, epoch):
        raise Killed()

    monkeypatch.setattr(ClipRecipe, "train_epoch", killed)  # epoch 1 of the continuation
    with pytest.raises(Killed):
        run(recipe_class("clip"), clip_config(shards, tmp_path, *ARGS, "train.epochs=2", "run.resume=true", name="r"))
    monkeypatch.undo()
    assert not result.exists()
    run(recipe_class("clip"), clip_config(shards, tmp_path, *ARGS, "train.epochs=2", "run.resume=true", name="r"))
    assert json.loads(result.read_text())["epochs_trained"] == 2
