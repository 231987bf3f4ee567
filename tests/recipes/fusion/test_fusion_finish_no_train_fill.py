"""The end of a run evaluates the best checkpoint on val (and test) only. Re-entering the best epoch's phase
refilled the frozen encoders' caches with a full pass over the TRAIN split first (with the paper's settings the
best epoch is in the both-frozen phase: a VGG16 + BERT pass over all training data, as long as an epoch of
encoding) that nothing used. The finish now makes no train-split pass, and its numbers are the ones it made
before: those the run measured for the best epoch's weights during training, bit for bit."""
from __future__ import annotations

import json

import pytest

from support.fusion import make_shards, tiny_config

# phase 0 (epoch 0): text frozen and cached; phase 1 (epochs 1-2): both frozen, heads train from features
PHASES = ("fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false}, "
          "{start_epoch: 1, train_image_encoder: false, train_text_encoder: false}]")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion import finish as finish_module
    from mmlnb_dist.recipes.fusion import phases
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    root = tmp_path_factory.mktemp("finish_fill")
    shards = make_shards(root, n=45, size=32, test_fraction=0.2)
    cfg = tiny_config(shards, root / "runs", "r", ["train.epochs=3", "data.loader.image_size=32", "run.seed=0",
                                                   PHASES])
    where = {"now": "training"}
    passes = {"training": [], "finish": []}  # the split of every cache-filling pass, by where it was made
    real_fill, real_finish = phases.fill_caches, finish_module.finish

    def counting_fill(model, loader, caches, env):
        passes[where["now"]].append(loader.split)
        return real_fill(model, loader, caches, env)

    def tracked_finish(recipe):
        where["now"] = "finish"
        return real_finish(recipe)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(phases, "fill_caches", counting_fill)
        patch.setattr(finish_module, "finish", tracked_finish)
        result = run(FusionRecipe, cfg)
    return {"result": result, "passes": passes, "run_dir": root / "runs" / "r"}


def test_the_finish_makes_no_pass_over_the_train_split(finished):
    assert finished["passes"]["training"] == ["train", "train"]  # one per phase entered (the spy does count)
    assert finished["result"]["best_epoch"] >= 0
    assert finished["passes"]["finish"] == []


def test_the_best_checkpoint_is_evaluated_as_the_run_measured_it(finished):
    """The finish's val metrics are those logged for the best epoch during training (same weights, same val
    batches, features of the same frozen encoders), equal bit for bit; test is evaluated too."""
    result, run_dir = finished["result"], finished["run_dir"]
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    at_best = [r for r in logged if r.get("epoch") == result["best_epoch"] and "val/accuracy" in r]
    assert len(at_best) == 1, logged
    for name in ("accuracy", "balanced_accuracy", "loss", "alpha_mean"):
        assert result[f"val/{name}"] == at_best[0][f"val/{name}"], name
    assert "test/accuracy" in result
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk["val/loss"] == result["val/loss"] and on_disk["test/loss"] == result["test/loss"]
