"""A search with failed trials says which failed and why: `summary.json` and the command's output held only a count
(`"errored": 1`, exit code 1), so the user had to find the row in trials.csv or scroll back through Ray's
tracebacks. The summary now maps each errored trial to its error line (`errored_trials`), and `tune` prints them."""
from __future__ import annotations

import json
from types import SimpleNamespace

from mmlnb_dist.config import load_config

METRIC = "val/balanced_accuracy"


def test_the_summary_and_the_command_name_the_failed_trials(tmp_path, monkeypatch, capsys):
    from mmlnb_dist.commands import tune as command
    from mmlnb_dist.tuning import outcome

    monkeypatch.setattr(outcome, "save_search_figure", lambda *a, **kw: tmp_path / "search.png")
    cfg = load_config("cpu-demo", ["tune.name=failed", "tracking.backends=[stdout]"])
    dirs = {"exp": tmp_path, "best": tmp_path / "best.yaml", "cache": tmp_path / "cache"}
    rows = [{"trial_id": "a", "status": "OK", "completed": True, METRIC: 0.5, "train.lr": 1e-3,
             "run_dir": str(tmp_path / "a")},
            {"trial_id": "b", "status": "ERROR", "completed": False, METRIC: 0.9, "train.lr": 5e-3,
             "error": "RuntimeError: boom", "run_dir": str(tmp_path / "b")}]
    summary = outcome.finish(cfg, rows, dirs, None, None, {"train.lr": {"loguniform": [1e-4, 1e-2]}}, 1.0, {})
    assert summary["errored_trials"] == {"b": "RuntimeError: boom"} and summary["best_trial_id"] == "a"
    assert json.loads((tmp_path / "summary.json").read_text())["errored_trials"] == {"b": "RuntimeError: boom"}

    monkeypatch.setattr(command, "load_from_args", lambda args: cfg)
    monkeypatch.setattr("mmlnb_dist.tuning.driver.run_search", lambda cfg, space: summary)
    assert command._tune(SimpleNamespace(ray_address=None, overrides=[], space=None)) == 1
    err = capsys.readouterr().err
    assert f"1 of 2 trials failed (see {tmp_path / 'trials.csv'}):\n  b: RuntimeError: boom" in err, err
