"""Any failure of a search ends its MLflow parent run as FAILED: only Ray's unreported-metric error and Ctrl-C did,
and any other error out of Ray (a trial's actor dying, a full disk while Tune saves its state) left the parent
run RUNNING for good in the MLflow UI."""
from __future__ import annotations

import contextlib
import io
import json

import pytest

from support.tune_signals import use_stand_in_tuner


@pytest.mark.parametrize("raised", ["TuneError", "OSError"])
def test_a_search_that_fails_ends_its_parent_run_failed(tmp_path, monkeypatch, raised):
    import mlflow
    from ray.tune.error import TuneError

    from mmlnb_dist.cli import main

    class Tuner:
        def __init__(self, *args, **kwargs):
            pass

        def fit(self):
            raise TuneError("a trial's actor died unexpectedly") if raised == "TuneError" else OSError("disk gone")

    use_stand_in_tuner(monkeypatch, Tuner)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), \
            pytest.raises((TuneError, OSError)):  # the failure itself still reaches the user
        main(["tune", "--config", "cpu-demo", "--space", "optimisation", f"run.output_dir={tmp_path}/runs",
              "tracking.backends=[mlflow]", "tune.recipe=mmlnb_dist.tuning.smoke:run", "tune.num_cpus=2"])
    exp = tmp_path / "runs" / "tune" / "search"
    run_id = json.loads((exp / "search.json").read_text())["parent_run_id"]
    assert mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}").get_run(run_id).info.status == "FAILED"
