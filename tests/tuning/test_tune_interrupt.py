"""Stopping a search (Ctrl-C: SIGINT; a scheduler or `kill`: SIGTERM) ends it as interrupted, exit code 130, with
"interrupted: resume with tune.resume=true": no best.yaml, no best in summary.json, the MLflow parent run KILLED.

Ray's `tuner.fit()` catches SIGINT itself, stops the trials, saves its state and returns as if the search had ended,
so a Ctrl-C during trial 1 of 3 exited 0, printed a "best" config and closed the parent run FINISHED with it.
SIGTERM raised inside `tuner.fit()` (exit 130, but Tune's state was up to 10 s old: a trial started last was
forgotten, its folder set aside as *.lost-1 on resume). Both now take Tune's own graceful stop, and the driver knows
the search was interrupted."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from support.tune_signals import assert_interrupted, install_tune_like_handler, use_stand_in_tuner


METRIC = "val/balanced_accuracy"
SMOKE = "tune.recipe=mmlnb_dist.tuning.smoke:run"
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_first_signal_asks_tune_to_stop_and_a_second_stops_at_once(signum):
    from mmlnb_dist.tuning.stop import GracefulSearchStop

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    stopped = []
    with pytest.raises(KeyboardInterrupt):
        with GracefulSearchStop() as stop:
            install_tune_like_handler(stopped)  # tuner.fit() has started its loop
            signal.pthread_kill(threading.get_ident(), signum)
            assert stopped == [signal.SIGUSR1] and stop.signal == signum  # Tune's own stop, recorded
            signal.pthread_kill(threading.get_ident(), signum)  # impatient: now at once
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_signal_before_tunes_loop_runs_stops_at_once():
    from mmlnb_dist.tuning.stop import GracefulSearchStop

    with pytest.raises(KeyboardInterrupt):
        with GracefulSearchStop() as stop:
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    assert stop.signal is None


class _Grid(list):
    def __init__(self, results, trials):
        super().__init__(results)
        self._experiment_analysis = SimpleNamespace(trials=trials)


def _trial(tid, started, status):
    return SimpleNamespace(trial_id=tid, status=status, run_metadata=SimpleNamespace(start_time=started))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_search_names_no_best_and_exits_130(tmp_path, monkeypatch, signum):
    """Ray's Tuner replaced by one that behaves as Tune does on a stop signal: trial 1 of 3 had reported a fine epoch,
    the signal comes, Tune stops and returns its trials (one running, the others not started)."""

    from mmlnb_dist.cli import main

    class Tuner:
        def __init__(self, *args, **kwargs):
            pass

        def fit(self):
            stopped = []
            install_tune_like_handler(stopped)
            signal.pthread_kill(threading.get_ident(), signum)
            assert stopped, "Tune was not asked to stop"
            result = SimpleNamespace(config={"train.lr": 1e-3}, error=None,
                                     metrics={METRIC: 0.9, "trial_id": "t1", "training_iteration": 1})
            pending = SimpleNamespace(config={"train.lr": 2e-3}, error=None, metrics={})
            return _Grid([result, pending, pending],
                         [_trial("t1", 10.0, "RUNNING"), _trial("t2", None, "PENDING"), _trial("t3", None, "PENDING")])

    use_stand_in_tuner(monkeypatch, Tuner)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["tune", "--config", "cpu-demo", "--space", "optimisation", f"run.output_dir={tmp_path}/runs",
                     "tracking.backends=[mlflow]", SMOKE, "tune.num_cpus=2", "tune.num_samples=3"])
    assert code == 130 and "mmlnb-dist tune: interrupted: resume with tune.resume=true" in err.getvalue()
    assert_interrupted(tmp_path / "runs", "search")


@pytest.mark.slow
def test_a_signalled_search_stops_as_interrupted_and_resumes(tmp_path):
    """The auditor's run: `kill -INT` of the driver during trial 1 of a 3-trial search, then `tune.resume=true`.
    (The same with SIGTERM, on the fusion recipe: tests/tuning/test_tune.py's SIGTERM test.)"""
    signum = signal.SIGINT
    import mlflow

    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {loguniform: [1.0e-3, 3.0e-3]}\n")
    cmd = [sys.executable, "-m", "mmlnb_dist.cli", "tune", "--config", "cpu-demo", "--space",
           str(tmp_path / "space.yaml"), f"run.output_dir={tmp_path}/runs", "tracking.backends=[mlflow]", SMOKE,
           "tune.num_cpus=2", "train.epochs=15", "tune.num_samples=3", "tune.scheduler=fifo", "tune.name=stopped"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    trials = tmp_path / "runs" / "tune" / "stopped" / "trials"
    log = tmp_path / "first.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        while proc.poll() is None and not list(trials.glob("*/trial_params.json")):
            time.sleep(0.2)  # the first trial has started
        os.kill(proc.pid, signum)  # the driver only
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    console = log.read_text()
    assert code == 130, console[-3000:]
    assert "mmlnb-dist tune: interrupted: resume with tune.resume=true" in console, console[-3000:]
    assert "best config:" not in console
    first = assert_interrupted(tmp_path / "runs", "stopped")
    assert first["trials"] < 3 or any(r != "OK" for r in _statuses(tmp_path))

    res = subprocess.run(cmd + ["tune.resume=true"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
                         check=False, start_new_session=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "tune" / "stopped" / "summary.json").read_text())
    assert summary["trials"] == 3 and summary["errored"] == 0 and summary.get("best_config"), summary
    assert summary["parent_run_id"] == first["parent_run_id"]
    assert not list(trials.glob("*.lost-*"))  # Tune's saved state knew every trial it had started
    parent = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}").get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["best_trial_id"] == summary["best_trial_id"]


def _statuses(tmp_path):
    import csv

    with open(tmp_path / "runs" / "tune" / "stopped" / "trials.csv", newline="") as fh:
        return [r["status"] for r in csv.DictReader(fh)]
