"""`tune.metric` must be a metric the search's trials report (`val/<name>` of their recipe's metrics), checked by
`config validate` and by `tune` before Ray starts. A typo used to start Ray, train a trial, end in Ray's ~100-line
"Trial returned a result which did not include the specified metric(s)" traceback (exit 1) and leave a stored
search that every later resume restored with the typo: the search name was broken for good. A resume whose
`tune.metric` / `tune.mode` differ from the stored search's (Ray restores its own) is refused by name.

No test here starts Ray."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError


def _cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("profile, overrides, says", [
    ("cpu-demo", ["tune.metric=val/balanced_acc"],
     r"tune.metric: 'val/balanced_acc' is not reported by fusion trials; did you mean 'val/balanced_accuracy'\? "
     r"\(they report val/accuracy, val/balanced_accuracy, .*val/loss\)"),
    ("cpu-demo", ["tune.metric=balanced_accuracy"], r"did you mean 'val/balanced_accuracy'"),
    ("cpu-demo", ["tune.metric=val/micro_f1"], r"'val/micro_f1' is not reported by fusion trials \(they report"),
    ("clip-multilabel", ["tune.metric=val/balanced_accuracy"], r"is not reported by clip trials"),
    # the j-of-k accuracies exist up to clip.top_k
    ("clip-multilabel", ["clip.top_k=2", "tune.metric=val/at_least_3_of_top_k"],
     r"'val/at_least_3_of_top_k' is not reported by clip trials"),
    ("cpu-demo", ["tune.recipe=vlm", "tune.metric=val/balanced_accuracy"], r"is not reported by vlm trials"),
    # a pipeline's trials report what its training recipe (train.recipe) reports
    ("cpu-demo", ["tune.recipe=vlm-fusion", "tune.metric=val/micro_f1"],
     r"is not reported by vlm-fusion trials \(train.recipe=fusion\)"),
])
def test_a_metric_the_trials_never_report_is_refused_by_config_validate(profile, overrides, says):
    with pytest.raises(ConfigError, match=says):
        load_config(profile, overrides)
    code, _, err = _cli(["config", "validate", "--config", profile, *overrides])
    assert code == 2 and "tune.metric:" in err, err


@pytest.mark.parametrize("profile, overrides", [
    ("cpu-demo", []),
    ("cpu-demo", ["tune.metric=val/loss"]),
    ("cpu-demo", ["tune.metric=val/quadratic_kappa"]),
    ("cpu-demo", ["tune.recipe=vlm", "tune.metric=val/loss"]),
    ("cpu-demo", ["tune.recipe=vlm-fusion", "tune.metric=val/auroc"]),
    ("clip-multilabel", ["tune.metric=val/at_least_3_of_top_k"]),
    ("clip-multilabel", ["tune.mode=min", "tune.metric=val/hamming_loss"]),
    ("clip-multilabel", ["tune.metric=val/hamming_loss"]),  # the mode follows the metric
    # a recipe class outside the table may report anything: its metric cannot be checked here
    ("cpu-demo", ["tune.recipe=my_package.recipes:MyRecipe", "tune.metric=val/my_score"]),
])
def test_the_metrics_the_trials_report_are_accepted(profile, overrides):
    assert load_config(profile, overrides).tune.metric == (overrides[-1].split("=", 1)[1] if overrides
                                                          else "val/balanced_accuracy")


def test_tune_refuses_a_metric_typo_before_ray_starts(tmp_path):
    import ray

    code, _, err = _cli(["tune", "--config", "cpu-demo", "--space", "optimisation", f"data.shards={tmp_path}/shards",
                         f"run.output_dir={tmp_path}/runs", "tune.name=mt3", "tune.metric=val/balanced_acc"])
    assert code == 2 and "did you mean 'val/balanced_accuracy'" in err, err
    assert "Traceback" not in err
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()


def _stored_search(exp_dir: Path, metric: str, mode: str) -> None:
    """A search as the driver leaves it once Ray's Tuner exists: search.json and Tune's tuner.pkl (which a Tuner
    writes when it is built, before Ray starts), holding the metric and mode that `Tuner.restore` brings back."""
    from ray import tune

    def trainable(config):  # never runs
        pass

    tune.Tuner(trainable, param_space={"train.lr": tune.uniform(1e-4, 1e-3)},
               tune_config=tune.TuneConfig(metric=metric, mode=mode, num_samples=1),
               run_config=tune.RunConfig(name=exp_dir.name, storage_path=str(exp_dir.parent), verbose=0))
    assert (exp_dir / "tuner.pkl").is_file()
    (exp_dir / "search.json").write_text(json.dumps({"parent_run_id": None, "space": "optimisation"}))


@pytest.mark.parametrize("stored, resumed, says", [
    # a search stored with a typo (before the metric was checked): the corrected resume is refused, never a traceback
    (("val/balanced_acc", "max"), ["tune.metric=val/balanced_accuracy"],
     r"search 'mt3' .* was started with tune.metric=val/balanced_acc tune.mode=max, which its trials never report: "
     r"it cannot resume; start a new search under another tune.name"),
    (("val/loss", "min"), ["tune.metric=val/balanced_accuracy"],
     r"search 'mt3' .* was started with tune.metric=val/loss tune.mode=min, and a resumed search keeps its own: "
     r"resume it with tune.metric=val/loss tune.mode=min, or start a new search under another tune.name"),
])
def test_a_resume_with_another_metric_is_refused_by_name_before_ray_starts(tmp_path, monkeypatch, stored, resumed,
                                                                          says):
    from mmlnb_dist.tuning import driver
    from mmlnb_dist.tuning.driver import SearchError, run_search

    def ray_starts(cfg):
        raise AssertionError("Ray started: Tuner.restore would bring back the stored metric and fail in a trial")

    monkeypatch.setattr(driver, "check_recipe", lambda cfg: None)  # no shard set needed to get that far
    monkeypatch.setattr(driver, "_init_ray", ray_starts)
    exp_dir = tmp_path / "runs" / "tune" / "mt3"
    _stored_search(exp_dir, *stored)
    cfg = load_config("cpu-demo", [f"data.shards={tmp_path}/shards", f"run.output_dir={tmp_path}/runs",
                                   "tune.name=mt3", "tune.resume=true", "tune.num_cpus=2", *resumed])
    with pytest.raises(SearchError, match=says):
        run_search(cfg, Path("optimisation"))
    assert not (exp_dir / "trials").exists()


def test_without_a_readable_tuner_pkl_the_drivers_record_decides(tmp_path, monkeypatch):
    """Tune's tuner.pkl of another Ray version (or a partial one): search.json's metric and mode, which the driver
    records, still refuse a resume under another metric."""
    from mmlnb_dist.tuning import driver

    exp_dir = tmp_path / "runs" / "tune" / "mt3"
    exp_dir.mkdir(parents=True)
    (exp_dir / "tuner.pkl").write_bytes(b"not a pickle")
    (exp_dir / "search.json").write_text(json.dumps({"metric": "val/loss", "mode": "min"}))
    monkeypatch.setattr(driver, "check_recipe", lambda cfg: None)
    monkeypatch.setattr(driver, "_init_ray", lambda cfg: pytest.fail("Ray started"))
    cfg = load_config("cpu-demo", [f"data.shards={tmp_path}/shards", f"run.output_dir={tmp_path}/runs",
                                   "tune.name=mt3", "tune.resume=true", "tune.num_cpus=2", "tune.metric=val/auroc"])
    with pytest.raises(driver.SearchError, match=r"started with tune.metric=val/loss tune.mode=min, and a resumed"):
        driver.run_search(cfg, Path("optimisation"))


@pytest.mark.parametrize("recipe, says", [
    ("fuson", r"tune.recipe: 'fuson' is no recipe of the table nor a pipeline; did you mean 'fusion'\?"),
    ("vlm_fusion", r"did you mean 'vlm-fusion'\?"),
    ("my_package.recipes.MyRecipe", r"or 'package.module:Name'"),
])
def test_a_trial_recipe_that_names_nothing_is_refused(recipe, says):
    """`tune.recipe=fuson` fell back to the curriculum space, skipped the recipe and space checks, started Ray,
    and every trial failed importing 'fuson'."""
    with pytest.raises(ConfigError, match=says):
        load_config("cpu-demo", [f"tune.recipe={recipe}"])
