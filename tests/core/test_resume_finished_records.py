"""A finished run resumed (or one killed during its finish) evaluates its best checkpoint again at the last
checkpoint's step and logs `best/<split>/*` and `data/bad_samples/<split>` there once more: `metrics.jsonl` must
still hold one record per (step, metric), with the resumed process's values."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from mmlnb_dist.config import load_config
from mmlnb_dist.core.tracking import build_logger

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"
FINISH = {"best/val/accuracy": 0.75, "best/val/macro_f1": 0.5}
BAD = {"data/bad_samples/val": 0.0, "data/bad_sample_rate/val": 0.0}


def _process(tmp_path: Path, *, resume: bool, train_steps, finish_value: float):
    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path / 'runs'}", "run.name=t", "tracking.log_environment=false",
                                 "tracking.backends=[stdout]", f"run.resume={str(resume).lower()}"])
    logger = build_logger(cfg.tracking, cfg.run, 0, tmp_path / "runs" / "t", "train")
    if resume:
        logger.resumed_at(4)  # the last checkpoint: the end of training
    for step in train_steps:
        logger.log_metrics({"train/loss": step / 100}, step=step)
    if 4 in train_steps:
        logger.log_metrics({"val/accuracy": 0.5}, step=4)
    logger.log_metrics(BAD, step=4)  # the finish's evaluations, at the last step
    logger.log_metrics({k: v + finish_value for k, v in FINISH.items()}, step=4)
    logger.close()


def _records(tmp_path: Path):
    return [json.loads(line) for line in (tmp_path / "runs" / "t" / "metrics.jsonl").read_text().splitlines()]


def test_a_finished_run_resumed_keeps_one_record_per_step_and_metric(tmp_path):
    _process(tmp_path, resume=False, train_steps=range(1, 5), finish_value=0.0)
    _process(tmp_path, resume=True, train_steps=(), finish_value=0.125)  # nothing left to train: finish again
    records = _records(tmp_path)
    pairs = Counter((r["step"], k) for r in records for k in r if k != "step")
    assert [p for p, n in pairs.items() if n > 1] == []
    values = {(r["step"], k): v for r in records for k, v in r.items() if k != "step"}
    assert {k: values[(4, k)] for k in FINISH} == {k: v + 0.125 for k, v in FINISH.items()}
    assert values[(4, "val/accuracy")] == 0.5 and values[(4, "train/loss")] == 0.04  # the training records stay
    assert sorted(s for s, k in values if k == "train/loss") == [1, 2, 3, 4]


def test_a_resume_killed_in_its_finish_and_resumed_again_still_keeps_one_record(tmp_path):
    _process(tmp_path, resume=False, train_steps=range(1, 5), finish_value=0.0)
    _process(tmp_path, resume=True, train_steps=(), finish_value=0.125)
    _process(tmp_path, resume=True, train_steps=(), finish_value=0.25)
    pairs = Counter((r["step"], k) for r in _records(tmp_path) for k in r if k != "step")
    assert [p for p, n in pairs.items() if n > 1] == []
    assert {k: v for r in _records(tmp_path) for k, v in r.items() if k in FINISH} == \
        {k: v + 0.25 for k, v in FINISH.items()}
