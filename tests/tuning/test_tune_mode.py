"""`tune.mode` follows `tune.metric`'s own direction (the recipe table's `lower_is_better`) unless set: a search
on `val/loss` used to keep the default `max`, so ASHA stopped the better trials and summary.json / best.yaml named
the highest-loss trial best. An explicit mode that contradicts the metric's direction is refused, naming the mode
to set. Resolved in one place (`config.tune.search_mode`) for the Tuner, the searcher, the best-trial choice, the
figure and the registration.

No test here starts Ray: the driver runs with Ray's Tuner replaced by one that returns given trial results."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from support.tune_search import replace_ray_tuner

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError


@pytest.mark.parametrize("profile, overrides, says", [
    ("cpu-demo", ["tune.metric=val/loss", "tune.mode=max"],
     r"tune.mode: 'max' contradicts tune.metric=val/loss, where lower is better \(fusion recipe\): set tune.mode=min, "
     r"or leave tune.mode unset \(it follows the metric\)"),
    ("cpu-demo", ["tune.mode=min"],  # val/balanced_accuracy
     r"tune.mode: 'min' contradicts tune.metric=val/balanced_accuracy, where higher is better \(fusion recipe\): "
     r"set tune.mode=max"),
    ("clip-multilabel", ["tune.metric=val/hamming_loss", "tune.mode=max"], r"set tune.mode=min"),
])
def test_an_explicit_mode_against_the_metrics_direction_is_refused(profile, overrides, says):
    with pytest.raises(ConfigError, match=says):
        load_config(profile, overrides)


@pytest.mark.parametrize("profile, overrides, mode", [
    ("cpu-demo", [], "max"),
    ("cpu-demo", ["tune.metric=val/loss"], "min"),
    ("cpu-demo", ["tune.metric=val/loss", "tune.mode=min"], "min"),
    ("cpu-demo", ["tune.recipe=vlm", "tune.metric=val/loss"], "min"),
    ("cpu-demo", ["tune.recipe=vlm-fusion", "tune.metric=val/loss"], "min"),
    ("clip-multilabel", ["tune.metric=val/hamming_loss", "tune.mode=null"], "min"),
    ("clip-multilabel", [], "max"),  # the profile's val/micro_f1, mode max
    # a recipe outside the table: the table's lower-is-better names, else max; an explicit mode is taken as given
    ("cpu-demo", ["tune.recipe=my_package.recipes:MyRecipe", "tune.metric=val/loss"], "min"),
    ("cpu-demo", ["tune.recipe=my_package.recipes:MyRecipe", "tune.metric=val/my_score"], "max"),
    ("cpu-demo", ["tune.recipe=my_package.recipes:MyRecipe", "tune.metric=val/loss", "tune.mode=max"], "max"),
])
def test_the_mode_follows_the_metric(profile, overrides, mode):
    from mmlnb_dist.config.tune import search_mode

    assert search_mode(load_config(profile, overrides)) == mode


class _Grid(list):
    """What `Tuner.fit` returns, for given trials' last reports."""

    def get_best_result(self, metric, mode, filter_nan_and_inf=True):
        pick = min if mode == "min" else max
        return pick(self, key=lambda r: r.metrics[metric])


def test_a_search_on_the_loss_minimises_it(tmp_path, monkeypatch):
    """The repro: `tune ... tune.metric=val/loss` (mode unset). The Tuner, ASHA and the searcher get mode=min, and the
    best trial in summary.json and best.yaml is the one with the lowest loss."""
    from mmlnb_dist.tuning import driver

    seen = {}

    class Tuner:
        def __init__(self, trainable, param_space, tune_config, run_config):
            seen["tune_config"] = tune_config

        def fit(self):
            return _Grid(SimpleNamespace(config={"train.lr": lr}, error=None,
                                         metrics={"val/loss": loss, "trial_id": tid, "training_iteration": 2})
                         for tid, lr, loss in (("a", 1e-3, 0.9), ("b", 3e-3, 0.3), ("c", 2e-3, 0.6)))

    replace_ray_tuner(monkeypatch, Tuner)
    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {loguniform: [1.0e-3, 3.0e-3]}\n")
    cfg = load_config("cpu-demo", [f"data.shards={tmp_path}/shards", f"run.output_dir={tmp_path}/runs",
                                   "tracking.backends=[stdout]", "train.epochs=2", "tune.num_cpus=2",
                                   "tune.name=mt2", "tune.metric=val/loss", "tune.searcher=optuna"])
    summary = driver.run_search(cfg, tmp_path / "space.yaml")

    tc = seen["tune_config"]
    assert (tc.metric, tc.mode) == ("val/loss", "min")
    assert tc.search_alg.searcher._mode == "min"
    assert summary["best_trial_id"] == "b" and summary["best_metric"] == 0.3, summary
    assert load_config(Path(summary["best_config"])).train.lr == 3e-3


def test_a_search_stored_with_the_wrong_mode_cannot_resume(tmp_path, monkeypatch):
    """A search started with val/loss and the old default mode=max: a resume (mode now min) is refused, and the
    message does not send the user to the mode that is now refused."""
    import json

    from ray import tune

    from mmlnb_dist.tuning import driver

    exp_dir = tmp_path / "runs" / "tune" / "mt2"
    tune.Tuner(lambda config: None, param_space={"train.lr": tune.uniform(1e-4, 1e-3)},
               tune_config=tune.TuneConfig(metric="val/loss", mode="max", num_samples=1),
               run_config=tune.RunConfig(name="mt2", storage_path=str(exp_dir.parent), verbose=0))
    (exp_dir / "search.json").write_text(json.dumps({"parent_run_id": None}))
    monkeypatch.setattr(driver, "check_recipe", lambda cfg: None)
    monkeypatch.setattr(driver, "_init_ray", lambda cfg: pytest.fail("Ray started"))
    cfg = load_config("cpu-demo", [f"data.shards={tmp_path}/shards", f"run.output_dir={tmp_path}/runs",
                                   "tune.num_cpus=2", "tune.name=mt2", "tune.metric=val/loss", "tune.resume=true"])
    with pytest.raises(driver.SearchError, match=r"started with tune.metric=val/loss tune.mode=max, which the "
                                                 r"config now refuses .*: it cannot resume; start a new search"):
        driver.run_search(cfg, Path("optimisation"))
