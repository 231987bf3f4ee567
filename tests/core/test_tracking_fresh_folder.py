"""A run folder's metrics.jsonl holds the metrics of the run its config.yaml describes, never another run's.

The stdout logger appended to `<run_dir>/metrics.jsonl` whether the run was new or resumed. Two `describe` jobs of
one profile (a training set, then an external test set) share `<run.name>-describe/`, and a training run that died
before its first checkpoint leaves its folder to the next fresh run: the folder's config.yaml was the new run's, its
metrics.jsonl both runs' records, and `mmlnb-dist tracking import` made one MLflow run of the mixture (two values at
each step). A fresh run now starts the file; a resumed run (`run.resume=true`) continues it."""
from __future__ import annotations

import json

from mmlnb_dist.config import load_config
from mmlnb_dist.core.tracking import build_logger


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def log_run(cfg, run_dir, value):
    logger = build_logger(cfg.tracking, cfg.run, 0, run_dir, "describe", config=cfg)
    logger.log_metrics({"describe/samples": value}, step=0)
    logger.close()


def test_a_fresh_run_starts_the_folder_metrics_and_a_resumed_run_continues_them(tmp_path):
    fresh = load_config("cpu-demo", ["tracking.backends=[stdout]", f"run.output_dir={tmp_path}"])
    run_dir = tmp_path / "cpu-demo-describe"
    log_run(fresh, run_dir, 600.0)
    log_run(fresh, run_dir, 200.0)  # another job of the same profile into the same folder
    assert records(run_dir) == [{"step": 0, "describe/samples": 200.0}]
    resumed = fresh.model_copy(update={"run": fresh.run.model_copy(update={"resume": True})})
    log_run(resumed, run_dir, 201.0)
    assert records(run_dir) == [{"step": 0, "describe/samples": 200.0}, {"step": 0, "describe/samples": 201.0}]
