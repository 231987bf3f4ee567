"""A `quniform` range on an integer field (`train.global_batch_size: {quniform: [16, 64, 16]}`) is sampled as whole
numbers. Ray's quniform gives floats: Ray's trial table, the trial folders' names, `trials.csv`, `summary.json`'s
`best_params` and the parent run's `best.*` tags all said `32.0` for a batch size the trial trained as 32. Such a key
is now Ray's `qrandint` (both ends inclusive, as quniform's), for the random and the Optuna searchers alike; a float
field's quniform stays a float."""
from __future__ import annotations

import random

from mmlnb_dist.tuning.space import apply_params, to_tune_space

SPACE = {"train.global_batch_size": {"quniform": [16, 64, 16]}, "train.weight_decay": {"quniform": [0.0, 0.1, 0.05]}}


def test_a_quantized_range_on_an_integer_field_samples_whole_numbers():
    space = to_tune_space(SPACE, "random", 9)
    random.seed(0)
    batches = space["train.global_batch_size"].sample(size=200)
    assert sorted(set(batches)) == [16, 32, 48, 64]
    assert all(type(b) is int for b in batches), {type(b) for b in batches}
    decays = space["train.weight_decay"].sample(size=50)
    assert all(isinstance(d, float) for d in decays) and set(round(d, 6) for d in decays) <= {0.0, 0.05, 0.1}


def test_optuna_suggests_whole_numbers_and_the_applied_value_is_one():
    from ray.tune.search.optuna import OptunaSearch

    optuna = OptunaSearch(metric="val/balanced_accuracy", mode="max", seed=0)
    optuna.set_search_properties("val/balanced_accuracy", "max", to_tune_space(SPACE, "optuna", 9))
    suggested = [optuna.suggest(str(i))["train.global_batch_size"] for i in range(12)]
    assert set(suggested) <= {16, 32, 48, 64} and all(type(v) is int for v in suggested), suggested
    _, applied = apply_params({"train": {"epochs": 9}}, {"train.global_batch_size": suggested[0]}, SPACE)
    assert applied["train.global_batch_size"] == suggested[0] and type(applied["train.global_batch_size"]) is int
