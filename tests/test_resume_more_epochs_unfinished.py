"""A finished run resumed for more epochs is unfinished until its new finish: its old `metrics.json` (the result of
the shorter run, and what `tracking import` takes as "the run finished", `FINISHED_FILE`) went on lying in the
folder beside a config.yaml of the longer run, so a continuation killed mid-way read as a finished run of the old
epochs. The run (core/recipe.py, for every recipe) now removes it before training; the new finish writes it again."""
from __future__ import annotations

import json

import pytest


class Killed(KeyboardInterrupt):
    pass


def _clip(tmp_path):
    from support.clip import caption_shards, clip_config

    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    shards = caption_shards(tmp_path, n=16, size=32)
    args = ("train.global_batch_size=8", "data.loader.augment=false")
    return ClipRecipe, lambda *more: clip_config(shards, tmp_path, *args, *more, name="r"), \
        lambda result: result["epochs_trained"]


def _fusion(tmp_path):
    from support.fusion import make_shards, tiny_config

    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    shards = make_shards(tmp_path, n=45, size=32)
    return FusionRecipe, lambda *more: tiny_config(shards, tmp_path, "r", ["data.loader.image_size=32", *more]), \
        lambda result: len(result["trained"]["epochs"])


@pytest.mark.parametrize("recipe", [_clip, _fusion], ids=["clip", "fusion"])
def test_a_continuation_killed_mid_way_leaves_no_result_of_the_shorter_run(recipe, tmp_path, monkeypatch):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.core.tracking.folder_import import FINISHED_FILE

    recipe_cls, config, epochs_of = recipe(tmp_path)
    run(recipe_cls, config("train.epochs=1"))
    result = tmp_path / "r" / FINISHED_FILE
    assert epochs_of(json.loads(result.read_text())) == 1

    def killed(self, epoch):
        raise Killed()

    monkeypatch.setattr(recipe_cls, "train_epoch", killed)  # epoch 1 of the continuation
    with pytest.raises(Killed):
        run(recipe_cls, config("train.epochs=2", "run.resume=true"))
    monkeypatch.undo()
    assert not result.exists()
    run(recipe_cls, config("train.epochs=2", "run.resume=true"))
    assert epochs_of(json.loads(result.read_text())) == 2
