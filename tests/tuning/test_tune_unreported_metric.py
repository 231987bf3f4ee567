"""A recipe outside the recipe table (`tune.recipe=package.module:Name`) may report any names, so its `tune.metric`
cannot be checked before it runs. When its trials never report the metric, Ray stops the whole search at the first
report; `mmlnb-dist tune` ended in two screens of Ray's traceback (`TuneError` around "Trial returned a result which
did not include the specified metric(s)") and left the MLflow parent run RUNNING. Now: one line naming the metric
and what the trials do report, exit code 2, the parent run FAILED."""
from __future__ import annotations

import contextlib
import io
import json

from support.tune_signals import use_stand_in_tuner

METRIC_TEXT = ("Trial returned a result which did not include the specified metric(s) `val/nope` that "
               "`tune.TuneConfig()` expects. Make sure your calls to `tune.report()` include the metric, or set the "
               "TUNE_DISABLE_STRICT_METRIC_CHECKING environment variable to 1. Result: {'val/loss': 1.06, "
               "'val/accuracy': 0.91, 'epoch': 0.0, 'timestamp': 1796608299, 'checkpoint_dir_name': None, 'done': "
               "False, 'training_iteration': 1, 'trial_id': 'b46dc_00000', 'config/train.lr': 0.0008}")


def test_trials_that_never_report_the_metric_end_the_search_with_one_clear_line(tmp_path, monkeypatch):
    import mlflow
    from ray.tune.error import TuneError

    from mmlnb_dist.cli import main

    class Tuner:
        def __init__(self, *args, **kwargs):
            pass

        def fit(self):  # as Ray raises it: the controller's traceback, formatted, in a TuneError
            raise TuneError(f"Traceback (most recent call last):\n  File \"tune_controller.py\"\nValueError: "
                            f"{METRIC_TEXT}")

    use_stand_in_tuner(monkeypatch, Tuner)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["tune", "--config", "cpu-demo", "--space", "optimisation", f"run.output_dir={tmp_path}/runs",
                     "tracking.backends=[mlflow]", "tune.recipe=mmlnb_dist.tuning.smoke:run", "tune.num_cpus=2",
                     "tune.metric=val/nope"])
    said = err.getvalue()
    assert code == 2, said
    assert "Traceback" not in said, said
    assert ("tune.metric=val/nope is not reported by the trials of tune.recipe=mmlnb_dist.tuning.smoke:run (a "
            "trial reported val/loss, val/accuracy)") in said, said
    exp = tmp_path / "runs" / "tune" / "search"
    assert f"start it again under another tune.name (or move {exp} away)" in said, said
    run_id = json.loads((exp / "search.json").read_text())["parent_run_id"]
    assert mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}").get_run(run_id).info.status == "FAILED"
