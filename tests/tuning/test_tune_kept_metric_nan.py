"""A finished trial whose result file holds its kept model's metric as NaN (its kept checkpoint's evaluation gave
NaN) is ranked and shown with that NaN, never with its last report's number: it was ranked on a model it did not
keep (its last epoch's 0.95 while the checkpoint it exported scored NaN). No Ray."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd

from mmlnb_dist.config import load_config

METRIC = "val/balanced_accuracy"


def _trial(tid, reports):
    frame = pd.DataFrame({METRIC: reports, "training_iteration": range(1, len(reports) + 1)})
    return SimpleNamespace(config={}, error=None, metrics_dataframe=frame,
                           metrics={METRIC: reports[-1], "trial_id": tid, "training_iteration": len(reports)})


def test_a_kept_metric_of_nan_is_not_replaced_by_the_last_report(tmp_path):
    from mmlnb_dist.tuning.results import finite, pick_best, trial_rows

    cfg = load_config("cpu-demo", ["tune.name=nan", "tracking.backends=[stdout]"])
    for tid, value in {"nan": float("nan"), "ok": 0.7}.items():
        (tmp_path / f"nan-{tid}").mkdir()
        (tmp_path / f"nan-{tid}" / "trial_result.json").write_text(json.dumps({METRIC: value}))
    rows = {r["trial_id"]: r for r in trial_rows([_trial("nan", [0.5, 0.95]), _trial("ok", [0.6, 0.7])],
                                                  {"trials": tmp_path}, cfg)}
    assert finite(rows["nan"][METRIC]) is None, rows["nan"][METRIC]
    assert rows["ok"][METRIC] == 0.7
    assert pick_best(list(rows.values()), METRIC, "max")["trial_id"] == "ok"
