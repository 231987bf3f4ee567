"""Each pass's bad-sample ledger (`data/bad_samples/<split>`) is logged once per step: the last epoch's validation
and the finish's validation with the best checkpoint run at the same optimizer step, and the run's metrics.jsonl
carried `data/bad_samples/val` twice at its last step."""
from __future__ import annotations

from collections import Counter

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.data.loader import build_loader
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.recipes.fusion import recipe as recipe_module
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

from support.fusion import tiny_config
from support.shards import make_shard_set


class Recorder:
    def __init__(self):
        self.logged = []

    def log_metrics(self, metrics, step):
        self.logged.extend((name, step) for name in metrics)

    def log_artifact(self, *args, **kwargs):
        pass


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    shards = make_shard_set(tmp_path, per_class=4, val_fraction=0.25, test_fraction=0.25)
    cfg = tiny_config(shards, tmp_path / "runs", "r")
    recipe = FusionRecipe(cfg, DistEnv())
    shard_set = ShardSet.open(shards)
    recipe.eval_loaders = {s: build_loader(shard_set, s, lambda sample: sample, cfg.data.loader, rank=0, world_size=1,
                                           batch_size=2, mode="eval", seed=0) for s in ("val", "test")}
    recipe.logger = Recorder()
    recipe.engine = None
    recipe.phases = type("Phases", (), {"caches": {"image": None, "text": None}})()
    recipe.classes = shard_set.classes
    # the forward pass is not what is checked here: the ledger of the evaluated split is
    monkeypatch.setattr(recipe_module, "evaluate_split", lambda *args, **kwargs: ({}, None))
    monkeypatch.setattr(FusionRecipe, "model", property(lambda self: None))
    return recipe


def test_the_ledger_of_a_split_evaluated_twice_at_one_step_is_logged_once(recipe):
    recipe.global_step = 3
    recipe.evaluate("val")  # the last epoch's validation
    recipe.evaluate("val")  # the finish's, with the best checkpoint, at the same step
    recipe.evaluate("test")
    recipe.global_step = 4
    recipe.evaluate("val")  # a later step is a new record
    counts = Counter(recipe.logger.logged)
    assert {k: n for k, n in counts.items() if n > 1} == {}
    assert counts[("data/bad_samples/val", 3)] == 1 and counts[("data/bad_samples/val", 4)] == 1
    assert counts[("data/bad_samples/test", 3)] == 1
    assert counts[("data/bad_sample_rate/val", 3)] == 1
