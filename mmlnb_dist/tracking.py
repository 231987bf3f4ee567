"""The metric-logger interface: one small protocol, backends chosen by config, the rank-0 rule inside.

Training loops call `logger.log_metrics(...)` unconditionally on every rank; `build_logger` hands ranks
other than 0 a logger that does nothing, so no loop ever asks "am I rank 0?" before logging.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Protocol

from .config import Config, TrackingConfig, flatten, save_config


class MetricLogger(Protocol):
    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None: ...
    def log_figure(self, figure: Any, name: str) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...


class NullLogger:
    """What every rank but 0 gets."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None: ...
    def log_figure(self, figure: Any, name: str) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...


class StdoutLogger(NullLogger):
    """Metrics as one line per call, and a JSONL copy in the run folder (`metrics.jsonl`)."""

    def __init__(self, run_dir: Optional[Path] = None, stream=None):
        self.stream = stream or sys.stdout
        self.jsonl = None
        if run_dir is not None:
            run_dir.mkdir(parents=True, exist_ok=True)
            self.jsonl = open(run_dir / "metrics.jsonl", "a")

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        print(f"[step {step}] {text}", file=self.stream, flush=True)
        if self.jsonl:
            self.jsonl.write(json.dumps({"step": step, **{k: float(v) for k, v in metrics.items()}}) + "\n")
            self.jsonl.flush()

    def close(self, status: str = "FINISHED") -> None:
        if self.jsonl:
            self.jsonl.close()
            self.jsonl = None


def default_tracking_uri(cfg: Config) -> str:
    """The embedded default: a SQLite store beside the runs (MLflow 3 refuses the old file store)."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    db = (cfg.run.output_dir / "mlflow.db").resolve()
    return f"sqlite:///{db}"


class MLflowLogger(NullLogger):
    """Logs to an MLflow run: params, metrics, artifacts and figures."""

    def __init__(self, tracking: TrackingConfig, uri: str, artifact_root: Path, run_name: str,
                 tags: Optional[Mapping[str, str]] = None):
        import mlflow

        self.mlflow = mlflow
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(tracking.experiment)
        if exp is None:
            artifact_root.mkdir(parents=True, exist_ok=True)
            exp_id = self.client.create_experiment(
                tracking.experiment, artifact_location=artifact_root.resolve().as_uri()
            )
        else:
            exp_id = exp.experiment_id
        self.run = self.client.create_run(exp_id, run_name=run_name, tags=dict(tags or {}))
        self.run_id = self.run.info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=items)

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_figure(self, figure: Any, name: str) -> None:
        self.client.log_figure(self.run_id, figure, name)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


class MultiLogger(NullLogger):
    """Fans every call out to several backends."""

    def __init__(self, loggers: List[Any]):
        self.loggers = loggers

    def log_params(self, params):
        for lg in self.loggers:
            lg.log_params(params)

    def log_metrics(self, metrics, step):
        for lg in self.loggers:
            lg.log_metrics(metrics, step)

    def log_artifact(self, path, artifact_path=None):
        for lg in self.loggers:
            lg.log_artifact(path, artifact_path)

    def log_figure(self, figure, name):
        for lg in self.loggers:
            lg.log_figure(figure, name)

    def set_tags(self, tags):
        for lg in self.loggers:
            lg.set_tags(tags)

    def close(self, status="FINISHED"):
        for lg in self.loggers:
            lg.close(status)

    @property
    def run_id(self) -> Optional[str]:
        return next((lg.run_id for lg in self.loggers if hasattr(lg, "run_id")), None)


def build_logger(cfg: Config, rank: int, run_dir: Path, stage: str,
                 tags: Optional[Mapping[str, str]] = None) -> MetricLogger:
    """The logger for one run of one stage. Ranks other than 0 get a `NullLogger`."""
    if rank != 0:
        return NullLogger()
    loggers: List[Any] = []
    if "stdout" in cfg.tracking.backends:
        loggers.append(StdoutLogger(run_dir))
    if "mlflow" in cfg.tracking.backends:
        ml = MLflowLogger(
            cfg.tracking, default_tracking_uri(cfg), cfg.run.output_dir / "mlartifacts",
            run_name=f"{cfg.run.name}-{stage}", tags={"stage": stage, **dict(tags or {})},
        )
        loggers.append(ml)
        ml.log_params(flatten(cfg))
        resolved = save_config(cfg, run_dir / "config.yaml")
        ml.log_artifact(resolved)
    return MultiLogger(loggers)
