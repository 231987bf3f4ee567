"""A class of the shard set with no train sample (its only slide landed in val or test) gets an output no sample
trains: the run's val and test samples of it all count as misses, and its balanced accuracy sank with nothing
saying why (the build warns about classes missing from val and test, not from train). `FusionRecipe.check` now
warns before training, naming the classes, the shard set and the remedy."""
from __future__ import annotations

import logging
from types import SimpleNamespace

from mmlnb_dist.recipes.fusion.checks import warn_untrained_classes

CLASSES = ["UD", "PD", "D"]


def _shards(tmp_path, train_counts):
    manifest = {"splits": {"train": {"class_counts": train_counts}, "val": {"class_counts": {"UD": 1, "D": 1}}}}
    return SimpleNamespace(root=tmp_path, manifest=manifest, classes=CLASSES)


def test_a_class_without_train_samples_is_warned_about(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.recipes.fusion.checks"):
        warn_untrained_classes(_shards(tmp_path, {"UD": 5, "PD": 0, "D": 3}))
    [warned] = [r.getMessage() for r in caplog.records]
    assert "train split" in warned and "PD" in warned and str(tmp_path) in warned, warned
    assert "UD" not in warned and "D," not in warned, warned


def test_a_train_split_of_every_class_says_nothing(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.recipes.fusion.checks"):
        warn_untrained_classes(_shards(tmp_path, {"UD": 5, "PD": 1, "D": 3}))
    assert not caplog.records


def test_the_recipe_check_runs_it():
    import inspect

    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    assert "warn_untrained_classes(shards)" in inspect.getsource(FusionRecipe.check)
