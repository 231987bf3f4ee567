"""What Ray Tune's loop does with signals, for tests of the searches' and studies' graceful stop."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path


def install_tune_like_handler(stopped: list) -> None:
    """What Ray's `tune.run` does when its loop starts: SIGUSR1 (and SIGINT, unless told not to) ask it to stop;
    each signal received is appended to `stopped`."""

    def tune_stop(signum, frame):
        stopped.append(signum)

    signal.signal(signal.SIGUSR1, tune_stop)
    if os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") != "1":
        signal.signal(signal.SIGINT, tune_stop)


def assert_interrupted(runs: Path, name: str) -> dict:
    """What an interrupted search leaves: summary.json says interrupted and names no best, no best.yaml, and the
    MLflow parent run is KILLED with no best tag, metric or param. Returns the summary."""
    import mlflow

    exp = runs / "tune" / name
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["interrupted"] is True and "best_config" not in summary and "best_trial_id" not in summary
    assert not (exp / "best.yaml").exists()
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "KILLED"
    assert not any(k.startswith("best") for k in [*parent.data.tags, *parent.data.metrics, *parent.data.params])
    return summary


def use_stand_in_tuner(monkeypatch, tuner_cls) -> None:
    """Make `run_search` drive `tuner_cls` (its `fit()` stands in for Ray Tune's) without starting Ray."""
    from ray import tune

    from mmlnb_dist.tuning import driver

    monkeypatch.setattr(driver, "_init_ray", lambda cfg: False)
    monkeypatch.setattr(tune, "Tuner", tuner_cls)
    monkeypatch.setattr(tune, "with_parameters", lambda fn, **kw: fn)
    monkeypatch.setattr(tune, "with_resources", lambda fn, res: fn)
