"""A resumed run's tracked records read as an uninterrupted run's: the steps a killed process logged after its
last checkpoint are run again by the resumed process, and neither `metrics.jsonl` nor the MLflow run may then
hold two records of one step (a curve that doubles back, an imported run with every replayed epoch twice)."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.tracking import build_logger

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"


def _cfg(tmp_path: Path, *extra: str):
    return load_config(CPU_DEMO, [f"run.output_dir={tmp_path / 'runs'}", "run.name=t", "tracking.log_environment=false",
                                  "tracking.backends=[stdout,mlflow]", *extra])


def _attempt(tmp_path: Path, steps, *, resume: bool, checkpoint_step=None, extra=(), killed=True):
    """One process of the run: log `loss = step / 100` at each of `steps` (what a deterministic run logs), resuming
    from `checkpoint_step` (None: no checkpoint was found); `killed`: the process dies without closing."""
    cfg = _cfg(tmp_path, f"run.resume={str(resume).lower()}", *extra)
    logger = build_logger(cfg.tracking, cfg.run, 0, tmp_path / "runs" / "t", "train")
    if resume:
        logger.resumed_at(-1 if checkpoint_step is None else checkpoint_step)
    for step in steps:
        logger.log_metrics({"train/loss": step / 100}, step=step)
    if killed:  # what SIGKILL leaves: files as they are, the journal's lock let go by the dying process
        for backend in logger.loggers:
            if getattr(backend, "jsonl", None):
                backend.jsonl.flush()
            if getattr(backend, "spool", None):
                backend.spool.unlock()
    else:
        logger.close()
    return logger


def _jsonl_steps(tmp_path: Path):
    lines = (tmp_path / "runs" / "t" / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["train/loss"]) for r in map(json.loads, lines)]


def _mlflow_steps(tmp_path: Path, run_id: str):
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}")
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, "train/loss"))


@pytest.mark.parametrize("spool", ["true", "false"])
def test_a_resume_from_step_4_after_a_kill_at_step_7_keeps_one_record_per_step(tmp_path, spool):
    extra = (f"tracking.spool={spool}",)
    killed = _attempt(tmp_path, range(1, 8), resume=False, extra=extra)  # checkpoint at 4, killed after 7
    resumed = _attempt(tmp_path, range(5, 11), resume=True, checkpoint_step=4, extra=extra, killed=False)
    uninterrupted = [(s, s / 100) for s in range(1, 11)]
    assert _jsonl_steps(tmp_path) == uninterrupted
    assert resumed.run_id == killed.run_id  # the same MLflow run, continued
    assert _mlflow_steps(tmp_path, resumed.run_id) == uninterrupted


def test_a_resume_that_found_no_checkpoint_starts_the_records_over(tmp_path):
    _attempt(tmp_path, range(0, 3), resume=False)  # killed before its first checkpoint
    resumed = _attempt(tmp_path, range(0, 5), resume=True, checkpoint_step=None, killed=False)
    assert _jsonl_steps(tmp_path) == [(s, s / 100) for s in range(0, 5)]
    assert _mlflow_steps(tmp_path, resumed.run_id) == [(s, s / 100) for s in range(0, 5)]


def test_a_second_kill_and_resume_still_keeps_one_record_per_step(tmp_path):
    _attempt(tmp_path, range(1, 8), resume=False)  # checkpoint at 4, killed after 7
    _attempt(tmp_path, range(5, 10), resume=True, checkpoint_step=4)  # checkpoint at 8, killed after 9
    resumed = _attempt(tmp_path, range(9, 13), resume=True, checkpoint_step=8, killed=False)
    uninterrupted = [(s, s / 100) for s in range(1, 13)]
    assert _jsonl_steps(tmp_path) == uninterrupted
    assert _mlflow_steps(tmp_path, resumed.run_id) == uninterrupted


def test_a_line_cut_short_by_the_kill_is_dropped_on_resume(tmp_path):
    _attempt(tmp_path, range(1, 4), resume=False)
    with open(tmp_path / "runs" / "t" / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "train/lo')  # the kill landed mid-write
    _attempt(tmp_path, range(4, 6), resume=True, checkpoint_step=3, killed=False)
    assert _jsonl_steps(tmp_path) == [(s, s / 100) for s in range(1, 6)]


def _history(tmp_path: Path, run_id: str, key: str):
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}")
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.mark.parametrize("spool", ["true", "false"])
def test_a_resume_after_a_kill_during_validation_keeps_that_epochs_validation_metrics(tmp_path, spool):
    """The epoch-end step gets `train_epoch/*` before the evaluation runs, so a kill during validation leaves that
    step with some keys logged; the resumed process's `val/*` and `best/val/*` at that step used to be dropped
    as a step 'already logged' (and `register` then read a stale `val/*` instead of `best/*`)."""
    extra = (f"tracking.spool={spool}",)
    cfg = _cfg(tmp_path, "run.resume=false", *extra)
    killed = build_logger(cfg.tracking, cfg.run, 0, tmp_path / "runs" / "t", "train")
    for step in range(1, 9):
        killed.log_metrics({"train/loss": step / 100}, step=step)
        if step == 4:  # epoch 0 ends at step 4: evaluated, checkpointed
            killed.log_metrics({"val/acc": 0.5, "best/val/acc": 0.5}, step=4)
    killed.log_metrics({"train_epoch/loss": 0.07}, step=8)  # epoch 1 ends at 8; killed during its validation
    for backend in killed.loggers:
        if getattr(backend, "spool", None):
            backend.spool.unlock()

    cfg = _cfg(tmp_path, "run.resume=true", *extra)
    resumed = build_logger(cfg.tracking, cfg.run, 0, tmp_path / "runs" / "t", "train")
    resumed.resumed_at(4)
    for step in range(5, 9):
        resumed.log_metrics({"train/loss": step / 100}, step=step)
    resumed.log_metrics({"train_epoch/loss": 0.07}, step=8)
    resumed.log_metrics({"val/acc": 0.75, "best/val/acc": 0.75}, step=8)
    resumed.close()

    assert resumed.run_id == killed.run_id
    assert _history(tmp_path, resumed.run_id, "val/acc") == [(4, 0.5), (8, 0.75)]
    assert _history(tmp_path, resumed.run_id, "best/val/acc") == [(4, 0.5), (8, 0.75)]
    assert _history(tmp_path, resumed.run_id, "train_epoch/loss") == [(8, 0.07)]  # logged once, not twice
    assert _mlflow_steps(tmp_path, resumed.run_id) == [(s, s / 100) for s in range(1, 9)]


@pytest.mark.parametrize("spool", ["true", "false"])
def test_a_finished_run_resumed_logs_its_final_records_once(tmp_path, spool):
    """`run.resume=true` on a run that ended: the resumed process starts at the last checkpoint's step and logs the
    finish's records (`best/val/*`) there again; the MLflow run held each twice at that step."""
    extra = (f"tracking.spool={spool}",)
    cfg = _cfg(tmp_path, "run.resume=false", *extra)
    finished = build_logger(cfg.tracking, cfg.run, 0, tmp_path / "runs" / "t", "train")
    for step in range(1, 5):
        finished.log_metrics({"train/loss": step / 100}, step=step)
    finished.log_metrics({"best/val/acc": 0.5}, step=4)
    finished.close()

    cfg = _cfg(tmp_path, "run.resume=true", *extra)
    resumed = build_logger(cfg.tracking, cfg.run, 0, tmp_path / "runs" / "t", "train")
    resumed.resumed_at(4)
    resumed.log_metrics({"best/val/acc": 0.5}, step=4)
    resumed.close()

    assert resumed.run_id == finished.run_id
    assert _history(tmp_path, resumed.run_id, "best/val/acc") == [(4, 0.5)]
    assert _mlflow_steps(tmp_path, resumed.run_id) == [(s, s / 100) for s in range(1, 5)]
