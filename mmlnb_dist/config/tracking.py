"""Where metrics go, how a lost tracking server is survived, and how trained models get registered."""
from __future__ import annotations

from typing import List, Literal, Optional

from pydantic import Field

from .base import Section


class TrackingConfig(Section):
    backends: List[Literal["stdout", "mlflow"]] = ["stdout", "mlflow"]
    """Metric-logger backends; every one logs from rank 0 only."""

    uri: Optional[str] = None
    """MLflow tracking URI; default: `sqlite:///<run.output_dir>/mlflow.db` created on first use."""

    experiment: str = "mmlnb"
    """MLflow experiment name."""

    system_metrics: bool = False
    """Log CPU, memory and GPU use alongside training metrics."""

    system_metrics_interval_s: float = Field(10.0, gt=0.0)
    """Seconds between two system-metric samples when `system_metrics` is on."""

    spool: bool = True
    """Append every MLflow call to `<run_dir>/mlflow_spool.jsonl` so `tracking sync` can replay it later."""

    request_timeout_s: float = Field(5.0, gt=0.0)
    """HTTP timeout of one tracking-server request; a dead server costs at most this (plus one retry)."""

    request_max_retries: int = Field(1, ge=0)
    """HTTP retries per tracking-server request (MLflow's default of 7 stalls a run for minutes)."""

    log_environment: bool = True
    """Tag each run with the git commit, the device and the versions of torch, deepspeed, mlflow, ray, ..."""

    log_dataset: bool = True
    """Log the shard set (`data.shards` manifest: name, digest, counts) as the run's MLflow dataset input."""

    parent_run_id: Optional[str] = None
    """Nest the run under this MLflow run (`mlflow.parentRunId` tag); the tune driver sets it per trial."""

    register_name: Optional[str] = None
    """Register the exported classifier under this Model Registry name at the end of training (off: None)."""

    register_alias: str = "champion"
    """Alias the new version takes, only when it beats the current holder on `register_metric`."""

    register_metric: Optional[str] = None
    """Metric that decides the alias, e.g. `best/val/balanced_accuracy`; default `best/val/<train.best_metric>`."""

    register_mode: Literal["max", "min"] = "max"
    """Whether a higher (max) or lower (min) `register_metric` is better."""
