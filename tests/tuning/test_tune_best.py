"""The best trial of a search is one that finished: an errored trial's last report (here 0.99 at epoch 0, before it
raised) was named best in summary.json, best.yaml and the MLflow parent run, because Ray's `get_best_result` does not
look at a trial's status. Only trials that ended (TERMINATED, ASHA-stopped ones included) with a finite metric count,
and search.png marks the same pick.

The first tests replace Ray's Tuner by one that returns given results; the last one runs a real search on the
stand-in recipe below (`tune.recipe=test_tune_best:raising_run`, imported by the Ray workers from this folder)."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmlnb_dist.config import load_config

METRIC = "val/balanced_accuracy"
HERE = Path(__file__).resolve().parent


def raising_run(cfg, env=None, report=None):
    """A trial that reports a great epoch 0, then fails when its learning rate is above 1e-3."""
    report(0, {METRIC: 0.99, "val/loss": 0.1})
    if cfg.train.lr > 1e-3:
        raise RuntimeError("boom")
    report(1, {METRIC: 0.6, "val/loss": 0.5})
    return {METRIC: 0.6}


def _row(tid, status, value, completed=True, lr=1e-3):
    return {"trial_id": tid, "status": status, METRIC: value, "completed": completed, "train.lr": lr}


def test_the_best_pick_skips_errored_and_diverged_trials_and_keeps_asha_stopped_ones():
    from mmlnb_dist.tuning.results import pick_best

    rows = [_row("a", "ERROR", 0.99), _row("b", "OK", 0.8), _row("c", "DIVERGED", math.nan),
            _row("d", "OK", 0.9, completed=False), _row("e", "OK", None)]
    assert pick_best(rows, METRIC, "max")["trial_id"] == "d"  # stopped early by ASHA, still a finished trial
    assert pick_best(rows, METRIC, "min")["trial_id"] == "b"
    assert pick_best([_row("a", "ERROR", 0.99), _row("c", "DIVERGED", math.nan)], METRIC, "max") is None
    assert pick_best([], METRIC, "max") is None


class _Grid(list):
    """What `Tuner.fit` returns, with Ray's own best-result choice (which ignores the trials' status)."""

    def get_best_result(self, metric, mode, filter_nan_and_inf=True):
        pick = min if mode == "min" else max
        return pick((r for r in self if r.metrics.get(metric) is not None), key=lambda r: r.metrics[metric])


def _fake_search(tmp_path, monkeypatch, results, name="best", extra=()):
    from support.tune_search import replace_ray_tuner  # (not at the top: Ray's workers import this module alone)

    from mmlnb_dist.tuning import driver

    class Tuner:
        def __init__(self, trainable, param_space, tune_config, run_config):
            pass

        def fit(self):
            return _Grid(results)

    replace_ray_tuner(monkeypatch, Tuner)
    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {grid: [1.0e-4, 5.0e-3]}\n")
    cfg = load_config("cpu-demo", [f"data.shards={tmp_path}/shards", f"run.output_dir={tmp_path}/runs",
                                   "tracking.backends=[stdout]", "train.epochs=2", "tune.num_cpus=2",
                                   f"tune.name={name}", "tune.searcher=grid", "tune.num_samples=1", *extra])
    return driver.run_search(cfg, tmp_path / "space.yaml")


def test_an_errored_trial_is_never_named_best(tmp_path, monkeypatch):
    from mmlnb_dist.tuning import outcome

    drawn = {}
    real = outcome.save_search_figure

    def capture(rows, params, metric, mode, path, name="", best=None):
        drawn.update(rows=rows, best=best)
        return real(rows, params, metric, mode, path, name, best=best)

    monkeypatch.setattr(outcome, "save_search_figure", capture)
    results = [SimpleNamespace(config={"train.lr": 1e-4}, error=None,
                               metrics={METRIC: 0.6, "trial_id": "ok1", "training_iteration": 2}),
               SimpleNamespace(config={"train.lr": 5e-3}, error=RuntimeError("boom"),
                               metrics={METRIC: 0.99, "trial_id": "err1", "training_iteration": 1})]
    summary = _fake_search(tmp_path, monkeypatch, results)
    assert summary["best_trial_id"] == "ok1" and summary["best_metric"] == 0.6, summary
    assert summary["best_params"] == {"train.lr": 1e-4}
    assert load_config(Path(summary["best_config"])).train.lr == 1e-4
    assert json.loads((Path(summary["experiment_dir"]) / "summary.json").read_text())["best_trial_id"] == "ok1"
    assert drawn["best"] == "ok1"  # search.png marks the trial the summary names


def test_the_figure_marks_the_picked_trial():
    from mmlnb_dist.tuning.figure import search_figure

    rows = [_row("a", "ERROR", 0.99), _row("b", "OK", 0.8), _row("c", "OK", 0.7)]
    fig = search_figure(rows, ["train.lr"], METRIC, "max", best="b")
    star = [c for c in fig.axes[0].collections if c.get_gid() == "best_trial"]
    assert len(star) == 1 and [tuple(p) for p in star[0].get_offsets().tolist()] == [(1, 0.8)]


def test_a_search_of_only_errored_trials_picks_nothing(tmp_path, monkeypatch):
    results = [SimpleNamespace(config={"train.lr": 5e-3}, error=RuntimeError("boom"),
                               metrics={METRIC: 0.99, "trial_id": "err1", "training_iteration": 1})]
    summary = _fake_search(tmp_path, monkeypatch, results, name="none")
    assert "best_config" not in summary and not (Path(summary["experiment_dir"]) / "best.yaml").exists()


@pytest.mark.slow
def test_a_real_search_skips_the_errored_trial(tmp_path, monkeypatch):
    """The auditor's search: grid over two learning rates, the larger one raises after a 0.99 epoch 0,
    tune.max_failures=0."""
    import mlflow

    from mmlnb_dist.tuning.driver import run_search

    monkeypatch.setenv("PYTHONPATH", str(HERE))  # the Ray workers import this module's raising_run
    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {grid: [1.0e-4, 5.0e-3]}\n")
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[mlflow]", "train.epochs=2",
                                   "tune.recipe=test_tune_best:raising_run", "tune.searcher=grid",
                                   "tune.num_samples=1", "tune.max_failures=0", "tune.scheduler=fifo",
                                   "tune.num_cpus=2", f"tune.metric={METRIC}"])
    summary = run_search(cfg, tmp_path / "space.yaml")
    assert summary["trials"] == 2 and summary["errored"] == 1, summary
    assert summary["best_params"] == {"train.lr": 1e-4} and summary["best_metric"] == 0.6, summary
    assert load_config(Path(summary["best_config"])).train.lr == 1e-4
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    parent = client.get_run(summary["parent_run_id"])
    assert parent.data.tags["best_trial_id"] == summary["best_trial_id"]
    assert parent.data.metrics[f"best/{METRIC}"] == 0.6


def test_a_trial_that_keeps_its_best_validation_is_ranked_by_it(tmp_path, monkeypatch):
    """`vlm.keep_best` trials keep their best validation's adapter and report `best/val_loss` beside the last
    `val/loss`: the search ranked them by the last one, so it could name best a trial whose kept adapter was worse."""
    results = [SimpleNamespace(config={"train.lr": 1e-4}, error=None,
                               metrics={"val/loss": 0.5, "best/val_loss": 0.2, "trial_id": "kept",
                                        "training_iteration": 2}),
               SimpleNamespace(config={"train.lr": 5e-3}, error=None,
                               metrics={"val/loss": 0.3, "trial_id": "last", "training_iteration": 2})]
    summary = _fake_search(tmp_path, monkeypatch, results, name="kept", extra=("tune.metric=val/loss",))
    assert summary["best_trial_id"] == "kept" and summary["best_metric"] == 0.2, summary
