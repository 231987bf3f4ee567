"""A run tracked while its MLflow store cannot be reached: what `tracking sync` later sends."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Sequence, Tuple


def journal_offline(monkeypatch, cfg: Any, run_dir: Path, records: Sequence[Tuple[int, Dict[str, float]]]) -> Path:
    """Log `records` ((step, metrics), ...) for a `train` run of `cfg` in `run_dir` with its store unreachable: the
    run's journal (`run_dir/tracking/train.jsonl`) holds them. The store is reachable again afterwards."""
    from mmlnb_dist.core.tracking import build_logger, mlflow_logger

    with monkeypatch.context() as patch:
        patch.setattr(mlflow_logger, "server_reachable", lambda *a, **k: False)
        logger = build_logger(cfg.tracking, cfg.run, 0, run_dir, "train")
        for step, metrics in records:
            logger.log_metrics(metrics, step=step)
        logger.close()
    return run_dir
