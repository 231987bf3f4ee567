"""A resumed search re-reports a trial that had finished before the driver was killed (Tune saves its state at most
every 10 s): its result file stands for its last report. A trial whose run diverged wrote a result file without the
search's metric (`{"diverged": ...}`), so the re-report lacked the metric and Ray Tune's controller refused it
("Trial returned a result which did not include the specified metric(s)"), where the first run had reported the
metric as NaN (`trial.run_target`). The re-report now says what that last report said."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

from mmlnb_dist.config import load_config
from mmlnb_dist.core.recipe import FINAL_REPORT

ROOT = Path(__file__).resolve().parents[2]
METRIC = "val/balanced_accuracy"


def test_a_diverged_trial_that_had_finished_reports_its_nan_metric_again_on_resume(tmp_path, monkeypatch):
    from ray import tune
    from ray.tune.execution.tune_controller import TuneController

    from mmlnb_dist.tuning.trial import RESULT_FILE, trial_main

    run_dir = tmp_path / "s-t0"
    run_dir.mkdir()
    (run_dir / RESULT_FILE).write_text(json.dumps({"diverged": "loss not finite at step 3", "trial_seconds": 2.0,
                                                   "pid": 1, "last_epoch": 1}))
    reports = []
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: "t0"))
    monkeypatch.setattr(tune, "report", reports.append)
    ctx = {"base": load_config(ROOT / "launch" / "profiles" / "cpu-demo.yaml").model_dump(mode="json"), "space": {},
           "name": "s", "trials_dir": str(tmp_path), "cache_dir": str(tmp_path / "c"), "uri": None,
           "parent_run_id": None, "recipe": "fusion", "tune": {}}
    trial_main({}, ctx)
    assert len(reports) == 1
    report = reports[0]
    assert math.isnan(report[METRIC]) and report["diverged"] == 1.0 and report[FINAL_REPORT] == 1.0
    assert report["epoch"] == 1.0
    # What Tune's controller checks of every result of a search with a metric (it raised on the old re-report)
    controller = SimpleNamespace(_metric=METRIC, _scheduler_alg=SimpleNamespace(metric=METRIC),
                                 _search_alg=SimpleNamespace(metric=METRIC))
    TuneController._validate_result_metrics(controller, {**report, "training_iteration": 1, "trial_id": "t0"})
