"""A trial that finished just before its search was stopped is run again by the resume (Tune saves its state at most
every 10 s); it finds its result file and reports that instead of training again. A fusion trial's result holds
the validation of the checkpoint it keeps (its best epoch), while the search ranked it, like every other trial, by
its last epoch's report: after a resume the same trial came back with another number (0.381 instead of 0.333 on
the CPU demo), and the search named another trial best than the same search run without a stop. The repeated
report now holds what the trial last reported."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from mmlnb_dist.config import load_config
from mmlnb_dist.core.recipe import FINAL_REPORT

ROOT = Path(__file__).resolve().parents[2]
METRIC = "val/balanced_accuracy"


def test_a_finished_trial_run_again_reports_what_it_last_reported(tmp_path, monkeypatch):
    from ray import tune

    from mmlnb_dist.tuning import trial

    def fusion_like(cfg, env, report):  # validates every epoch, keeps (and returns) its best epoch's validation
        for epoch, value in enumerate((0.2, 0.5, 0.3)):
            report(epoch, {METRIC: value, "val/loss": 1.0 - value})
        return {METRIC: 0.5, "val/loss": 0.5, "best_epoch": 1}

    monkeypatch.setattr(trial, "resolve_target", lambda name: fusion_like)
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: "t0"))
    reports = []
    monkeypatch.setattr(tune, "report", reports.append)
    ctx = {"base": load_config(ROOT / "launch" / "profiles" / "cpu-demo.yaml").model_dump(mode="json"),
           "space": {}, "name": "s", "trials_dir": str(tmp_path), "cache_dir": str(tmp_path / "c"), "uri": None,
           "parent_run_id": None, "recipe": "fusion", "tune": {}}
    trial.trial_main({}, ctx)
    last = reports[-1]
    assert (last[METRIC], last["epoch"]) == (0.3, 2.0)
    assert json.loads((tmp_path / "s-t0" / trial.RESULT_FILE).read_text())[METRIC] == 0.5  # the kept model's
    reports.clear()
    trial.trial_main({}, ctx)  # the resume runs it again: it reports its result once, as final
    assert len(reports) == 1
    again = reports[0]
    assert (again[METRIC], again["val/loss"], again["epoch"], again[FINAL_REPORT]) == (0.3, 1.0 - 0.3, 2.0, 1.0)
    assert again["best_epoch"] == 1.0  # the rest of the result as before
