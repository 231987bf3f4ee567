"""`trials.csv` and the figure's order. The `error` column held the first line of Ray's wrapper
(`ESC[36mray::ImplicitFunc.train()ESC[39m (pid=...)`) instead of what failed: it now holds the underlying
exception's last line, without colour codes. Rows and search.png's "creation order" (and its best-so-far line) went by
the trial ids sorted as strings, which Optuna draws at random: they now follow the order the trials started in.

Ray's Tuner is replaced by one that returns given results and Tune's records of the trials."""
from __future__ import annotations

import csv
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmlnb_dist.config import load_config

METRIC = "val/balanced_accuracy"


class _Grid(list):
    """What `Tuner.fit` returns: results, and (as Ray's ResultGrid) Tune's records of the same trials."""

    def __init__(self, results, trials=None):
        super().__init__(results)
        if trials is not None:
            self._experiment_analysis = SimpleNamespace(trials=trials)

    def get_best_result(self, metric, mode, filter_nan_and_inf=True):
        pick = min if mode == "min" else max
        return pick((r for r in self if r.metrics.get(metric) is not None), key=lambda r: r.metrics[metric])


def _search(tmp_path, monkeypatch, grid, searcher="random", interrupted=False):
    from ray import tune

    from mmlnb_dist.tuning import driver, outcome

    class Tuner:
        def __init__(self, trainable, param_space, tune_config, run_config):
            pass

        def fit(self):
            return grid

    drawn = {}
    real = outcome.save_search_figure

    def capture(rows, *args, **kwargs):
        drawn["rows"] = rows
        return real(rows, *args, **kwargs)

    monkeypatch.setattr(outcome, "save_search_figure", capture)
    monkeypatch.setattr(driver, "check_recipe", lambda cfg: None)
    monkeypatch.setattr(driver, "_init_ray", lambda cfg: False)
    monkeypatch.setattr(tune, "Tuner", Tuner)
    monkeypatch.setattr(tune, "with_parameters", lambda fn, **kw: fn)
    monkeypatch.setattr(tune, "with_resources", lambda fn, res: fn)
    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {loguniform: [1.0e-4, 1.0e-2]}\n")
    cfg = load_config("cpu-demo", [f"data.shards={tmp_path}/shards", f"run.output_dir={tmp_path}/runs",
                                   "tracking.backends=[stdout]", "train.epochs=2", "tune.num_cpus=2",
                                   "tune.name=table", f"tune.searcher={searcher}", "tune.num_samples=3"])
    if interrupted:  # a trial Tune never finished: the search ends as interrupted (a KeyboardInterrupt, which
        # pytest would take as the user's Ctrl-C and stop the session), its trials.csv still written
        from mmlnb_dist.tuning.stop import SearchInterrupted

        with pytest.raises(SearchInterrupted) as stopped:
            driver.run_search(cfg, tmp_path / "space.yaml")
        summary = stopped.value.summary
    else:
        summary = driver.run_search(cfg, tmp_path / "space.yaml")
    with open(Path(summary["experiment_dir"]) / "trials.csv", newline="") as fh:
        return summary, list(csv.DictReader(fh)), drawn["rows"]


def _ray_task_error():
    """What Ray hands the driver for a trial whose function raised `RuntimeError("boom")`."""
    from ray.exceptions import RayTaskError

    try:
        raise RuntimeError("boom")
    except RuntimeError as err:
        return RayTaskError("ImplicitFunc.train", traceback.format_exc(), err, proctitle="ray::ImplicitFunc.train()",
                            pid=4242, ip="10.0.0.7")


def test_the_error_column_holds_the_exception_that_failed_the_trial(tmp_path, monkeypatch):
    error = _ray_task_error()
    assert "\x1b[" in str(error)  # as Ray writes it
    grid = _Grid([SimpleNamespace(config={"train.lr": 1e-3}, error=None,
                                  metrics={METRIC: 0.7, "trial_id": "a", "training_iteration": 2}),
                  SimpleNamespace(config={"train.lr": 5e-3}, error=error,
                                  metrics={METRIC: 0.9, "trial_id": "b", "training_iteration": 1})])
    _, rows, _ = _search(tmp_path, monkeypatch, grid)
    failed = [r for r in rows if r["status"] == "ERROR"]
    assert [r["error"] for r in failed] == ["RuntimeError: boom"], rows


def test_error_line_of_other_errors():
    from mmlnb_dist.tuning.results import error_line

    assert error_line(RuntimeError("boom")) == "RuntimeError: boom"
    assert error_line(ValueError("")) == "ValueError"
    assert error_line(Exception("\x1b[31mfirst\x1b[0m\nTraceback ...\n  File 'x'\nKeyError: 'k'\n\n")) == \
        "KeyError: 'k'"


def _trial(tid, started, status="TERMINATED"):
    return SimpleNamespace(trial_id=tid, status=status, run_metadata=SimpleNamespace(start_time=started))


def test_rows_and_the_figure_follow_the_order_the_trials_started_in(tmp_path, monkeypatch):
    """Optuna's random trial ids: 'f3...' started first, then 'a1...', then '7c...'. Ray's list moves a retried
    trial to its end, so neither the ids nor that list is the start order."""
    started = {"f3c2a9d1": 100.0, "a1b7e044": 105.0, "7c0d55e2": 110.0}
    values = {"f3c2a9d1": 0.9, "a1b7e044": 0.5, "7c0d55e2": 0.95}
    listed = ["a1b7e044", "7c0d55e2", "f3c2a9d1"]  # f3... failed once and was retried: Ray moved it last
    grid = _Grid([SimpleNamespace(config={"train.lr": 1e-3}, error=None,
                                  metrics={METRIC: values[t], "trial_id": t, "training_iteration": 2})
                  for t in listed], [_trial(t, started[t]) for t in listed])
    summary, rows, drawn = _search(tmp_path, monkeypatch, grid, searcher="optuna")
    order = ["f3c2a9d1", "a1b7e044", "7c0d55e2"]
    assert [r["trial_id"] for r in rows] == order
    assert [r["trial_id"] for r in drawn] == order  # the figure's x axis and best-so-far line
    assert summary["best_trial_id"] == "7c0d55e2"


def test_a_trial_that_never_reported_keeps_its_id_and_status(tmp_path, monkeypatch):
    """Tune's own record names a trial that failed before its first report (its metrics are empty) and one that
    never started (an interrupted search): they used to show as trial '?' with status OK."""
    grid = _Grid([SimpleNamespace(config={"train.lr": 1e-3}, error=None,
                                  metrics={METRIC: 0.7, "trial_id": "aaaa0001", "training_iteration": 2}),
                  SimpleNamespace(config={"train.lr": 2e-3}, error=RuntimeError("no data"), metrics={}),
                  SimpleNamespace(config={"train.lr": 3e-3}, error=None, metrics={})],
                 [_trial("aaaa0001", 10.0), _trial("bbbb0002", 20.0, "ERROR"), _trial("cccc0003", None, "PENDING")])
    summary, rows, _ = _search(tmp_path, monkeypatch, grid, interrupted=True)
    assert summary["interrupted"] and "best_trial_id" not in summary  # a partial search names no best
    assert [(r["trial_id"], r["status"]) for r in rows] == [("aaaa0001", "OK"), ("bbbb0002", "ERROR"),
                                                            ("cccc0003", "PENDING")]
    assert rows[1]["error"] == "RuntimeError: no data"
