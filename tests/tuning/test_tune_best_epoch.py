"""A trial keeps its best epoch's checkpoint (fusion, CLIP: `train.best_metric`; a VLM trial under `vlm.keep_best`:
its best validation's adapter), and its `trial_result.json`, export and `best.yaml`'s meaning are that checkpoint's.
The search ranked the trials by their LAST report instead: when a trial's best epoch was not its last, another
trial whose last epoch was better but whose best epoch was worse was named best, and `trials.csv` / `summary.json`
showed numbers the trial's own result file did not hold. A finished trial's metric is now its result file's (the kept
checkpoint's); a trial stopped early (no result file) counts its best report in the search's mode. No Ray."""
from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pandas as pd

from mmlnb_dist.config import load_config

METRIC = "val/balanced_accuracy"


def _cfg(*extra):
    return load_config("cpu-demo", ["tune.name=epoch", "tracking.backends=[stdout]", *extra])


def _trial(tid, reports, metric=METRIC, lr=1e-3):
    """A Tune result whose trial reported `reports` (one value of `metric` per epoch), last one last."""
    frame = pd.DataFrame({metric: reports, "training_iteration": range(1, len(reports) + 1)})
    return SimpleNamespace(config={"train.lr": lr}, error=None, metrics_dataframe=frame,
                           metrics={metric: reports[-1], "trial_id": tid, "training_iteration": len(reports)})


def _rows(tmp_path, results, files, cfg):
    from mmlnb_dist.tuning.results import trial_rows

    trials = tmp_path / "trials"
    for tid, content in files.items():
        (trials / f"epoch-{tid}").mkdir(parents=True)
        (trials / f"epoch-{tid}" / "trial_result.json").write_text(json.dumps(content))
    return trial_rows(results, {"trials": trials}, cfg)


def test_the_best_trial_is_the_one_whose_kept_checkpoint_is_best(tmp_path):
    """a: best epoch 0.9, last 0.6; b: best 0.75, last 0.7. Each result file holds its kept (best) epoch's number,
    so a is the better model: it was named worse by its last epoch."""
    from mmlnb_dist.tuning.results import pick_best

    results = [_trial("a", [0.5, 0.9, 0.6], lr=1e-4), _trial("b", [0.5, 0.75, 0.7], lr=5e-3)]
    files = {"a": {METRIC: 0.9, "best_epoch": 1}, "b": {METRIC: 0.75, "best_epoch": 1}}
    rows = _rows(tmp_path, results, files, _cfg())
    assert {r["trial_id"]: r[METRIC] for r in rows} == {"a": 0.9, "b": 0.75}
    assert pick_best(rows, METRIC, "max")["trial_id"] == "a"


def test_a_trial_stopped_early_counts_its_best_report_in_the_search_mode(tmp_path):
    """No result file (ASHA stopped it): its best epoch's checkpoint is still the one it kept; min for a loss."""
    cfg = _cfg("tune.metric=val/loss")
    results = [_trial("early", [0.4, 0.2, 0.5], metric="val/loss"), _trial("done", [0.6, 0.3], metric="val/loss")]
    rows = {r["trial_id"]: r for r in _rows(tmp_path, results, {"done": {"val/loss": 0.3}}, cfg)}
    assert rows["early"]["val/loss"] == 0.2 and rows["done"]["val/loss"] == 0.3
    rows = {r["trial_id"]: r for r in _rows(tmp_path / "max", [_trial("early", [0.4, 0.7, 0.5])], {}, _cfg())}
    assert rows["early"][METRIC] == 0.7


def test_the_summary_and_trials_table_hold_the_trials_own_result_numbers(tmp_path):
    """What `finish` writes: summary.json's best_metric and trials.csv's column are the result file's numbers."""
    from mmlnb_dist.tuning.outcome import finish

    cfg = _cfg()
    results = [_trial("a", [0.5, 0.9, 0.6], lr=1e-4), _trial("b", [0.5, 0.75, 0.7], lr=5e-3)]
    rows = _rows(tmp_path, results, {"a": {METRIC: 0.9}, "b": {METRIC: 0.75}}, cfg)
    exp = tmp_path / "exp"
    exp.mkdir()
    dirs = {"exp": exp, "cache": tmp_path / "cache", "best": exp / "best.yaml", "trials": tmp_path / "trials"}
    space = {"train.lr": {"choice": [1e-4, 5e-3]}}
    summary = finish(cfg, rows, dirs, None, None, space, 1.0, {})
    assert summary["best_trial_id"] == "a" and summary["best_metric"] == 0.9
    assert summary["best_params"] == {"train.lr": 1e-4}
    with open(exp / "trials.csv") as fh:
        table = {r["trial_id"]: float(r[METRIC]) for r in csv.DictReader(fh)}
    assert table == {"a": 0.9, "b": 0.75}


def test_a_vlm_result_file_keeps_its_best_adapters_loss(tmp_path):
    """A `vlm.keep_best` trial's result file holds its last `val/loss` and its kept adapter's `best/val_loss`."""
    cfg = _cfg("tune.metric=val/loss")
    results = [_trial("k", [0.3, 0.5], metric="val/loss")]
    rows = _rows(tmp_path, results, {"k": {"val/loss": 0.5, "best/val_loss": 0.3}}, cfg)
    assert rows[0]["val/loss"] == 0.3
