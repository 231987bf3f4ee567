"""Where metrics go."""
from __future__ import annotations

from typing import List, Literal, Optional

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
