"""A search ranks its trials on `tune.metric`, and each trial keeps (evaluates, exports) the checkpoint that is best
on `train.best_metric`. With `tune.metric=val/kappa` on a profile whose `train.best_metric` is left at its default
(`balanced_accuracy`), every trial kept its best-balanced-accuracy epoch, and the "best trial" was ranked on the
kappa of a model chosen by another metric. Now the trials keep the checkpoint best on the searched metric, and a
config that sets both apart is refused before Ray starts (`config validate` too), naming both keys.

No test here starts Ray."""
from __future__ import annotations

import contextlib
import io

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError

SPACE = "optimisation"


def _cfg(tmp_path, *extra):
    return load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[stdout]",
                                    "tune.num_cpus=2", *extra])


def _trial_base(tmp_path, monkeypatch, *extra):
    """The base config `run_search` hands its trials (stopped where it would take the search folder)."""
    from mmlnb_dist.tuning import checks, driver

    seen = {}

    def held(cfg, base, *rest):
        seen["base"] = base
        return {}

    monkeypatch.setattr(driver, "_run_held", held)
    monkeypatch.setattr(driver, "check_recipe", lambda cfg: None)  # no shard set needed to see the base
    monkeypatch.setattr(checks, "check_recipe", lambda cfg: None)
    driver.run_search(_cfg(tmp_path, *extra), SPACE)
    return seen["base"]


def test_trials_keep_the_checkpoint_best_on_the_searched_metric(tmp_path, monkeypatch):
    base = _trial_base(tmp_path, monkeypatch, "tune.metric=val/kappa")
    assert base["train"]["best_metric"] == "kappa"


def test_a_metric_set_by_train_alone_is_searched_and_kept(tmp_path, monkeypatch):
    base = _trial_base(tmp_path, monkeypatch, "train.best_metric=f1_weighted")
    assert base["train"]["best_metric"] == "f1_weighted" and base["tune"]["metric"] == "val/f1_weighted"


def test_both_set_apart_are_refused_before_ray_starts(tmp_path, monkeypatch):
    from mmlnb_dist.tuning import driver

    monkeypatch.setattr(driver, "_init_ray", lambda cfg: pytest.fail("Ray started"))
    cfg = _cfg(tmp_path, "tune.metric=val/kappa", "train.best_metric=balanced_accuracy")
    with pytest.raises(ConfigError, match=r"tune\.metric=val/kappa.*train\.best_metric=balanced_accuracy.*"
                                          r"train\.best_metric=kappa"):
        driver.run_search(cfg, SPACE)
    assert not (tmp_path / "runs" / "tune").exists()


def test_config_validate_names_both(tmp_path):
    from mmlnb_dist.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["config", "validate", "--config", "cpu-demo", "tune.metric=val/kappa",
                     "train.best_metric=balanced_accuracy"])
    assert code == 2 and "train.best_metric" in err.getvalue() and "tune.metric" in err.getvalue(), err.getvalue()


def test_the_same_metric_twice_is_fine(tmp_path):
    from mmlnb_dist.tuning.checks import check_search

    check_search(_cfg(tmp_path, "tune.metric=val/kappa", "train.best_metric=kappa"))
