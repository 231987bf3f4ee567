"""The MLflow backend of the metric logger: params, metrics, artifacts, figures and dataset inputs.

The backend never stops a run: every call is first appended to the run's journal (`journal.Spool`), then sent.
When the tracking server cannot be reached (at start or mid-run) the logger warns once, stops sending and keeps
journaling; `mmlnb-dist tracking sync RUN_DIR` replays the journal later (`journal.sync_run_dir`).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ..sections import TrackingConfig
from .journal import Spool
from .loggers import NullLogger
from .server import get_or_create_experiment, limit_http_retries, server_reachable

log = logging.getLogger(__name__)


def _dataset_inputs(specs: List[Dict[str, Any]]):
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for s in specs:
        ds = Dataset(name=s["name"], digest=s["digest"], source_type="local",
                     source=json.dumps({"uri": s["source"]}), profile=json.dumps(s["profile"]))
        inputs.append(DatasetInput(ds, tags=[InputTag("mlflow.data.context", s["context"])]))
    return inputs


def apply_event(client, run_id: str, event: Dict[str, Any]) -> None:
    """Send one journal event to MLflow."""
    from mlflow.entities import Metric, Param, RunTag

    op = event["op"]
    if op == "params":
        items = [Param(k, v) for k, v in event["params"].items()]
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=items[i:i + 100])
    elif op == "metrics":
        items = [Metric(k, v, event["ts"], event["step"]) for k, v in event["metrics"].items()]
        client.log_batch(run_id, metrics=items)
    elif op == "tags":
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in event["tags"].items()])
    elif op == "artifact":
        path = Path(event["path"])
        if not path.exists():
            log.warning("artifact %s no longer exists; not uploaded", path)
        elif path.is_dir():
            client.log_artifacts(run_id, str(path), event.get("artifact_path"))
        else:
            client.log_artifact(run_id, str(path), event.get("artifact_path"))
    elif op == "inputs":
        client.log_inputs(run_id, datasets=_dataset_inputs(event["datasets"]))
    elif op == "close":
        client.set_terminated(run_id, status=event["status"], end_time=event.get("ts"))
    elif op != "start":
        raise ValueError(f"unknown journal event {op!r}")


class MLflowLogger(NullLogger):
    """Logs to an MLflow run: params, metrics, artifacts, figures, dataset inputs; never raises on a lost server.

    With `run_dir` every call is journaled first (`Spool`); without it, calls go straight to MLflow and a
    failure is still only warned about once.
    """

    wants_figures = True

    def __init__(self, tracking: TrackingConfig, uri: str, artifact_root: Path, run_name: str,
                 tags: Optional[Mapping[str, str]] = None, run_dir: Optional[Path] = None):
        import mlflow

        limit_http_retries(tracking)
        self.tracking = tracking
        self.uri = uri
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.spool = Spool(self.run_dir) if (self.run_dir is not None and tracking.spool) else None
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.run_id: Optional[str] = None
        self.online = True
        self._warned = False
        self._monitor = None
        tags = dict(tags or {})
        if tracking.parent_run_id:
            tags["mlflow.parentRunId"] = tracking.parent_run_id
        self._record({"op": "start", "run_name": run_name, "experiment": tracking.experiment,
                      "artifact_root": str(Path(artifact_root).resolve()), "tags": tags})
        if not server_reachable(uri, tracking.request_timeout_s):
            self._go_offline(f"tracking server {uri} is not reachable")
            return
        try:
            exp_id = get_or_create_experiment(self.client, tracking.experiment, Path(artifact_root))
            self.run = self.client.create_run(exp_id, run_name=run_name, tags=tags)
            self.run_id = self.run.info.run_id
        except Exception as err:  # noqa: BLE001 - any tracking failure must leave training running
            self._go_offline(f"could not create an MLflow run at {uri}: {err}")
            return
        if self.spool:
            self.spool.write_state(tracking_uri=uri, experiment=tracking.experiment, run_name=run_name,
                                   run_id=self.run_id, applied=self.spool.count)
        if tracking.system_metrics:
            self._start_system_metrics()

    # -- plumbing
    def _go_offline(self, reason: str) -> None:
        self.online = False
        if not self._warned:
            self._warned = True
            where = f"; metrics are kept in {self.spool.path} - upload them later with " \
                    f"`mmlnb-dist tracking sync {self.run_dir}`" if self.spool else ""
            log.warning("MLflow tracking disabled for this run: %s%s", reason, where)

    def _record(self, event: Dict[str, Any]) -> None:
        if self.spool:
            self.spool.append(event)

    def _emit(self, event: Dict[str, Any]) -> None:
        self._record(event)
        if not (self.online and self.run_id):
            return
        try:
            apply_event(self.client, self.run_id, event)
        except Exception as err:  # noqa: BLE001
            self._stop_system_metrics()
            self._go_offline(f"tracking server call failed ({type(err).__name__}: {str(err)[:200]})")
            return
        if self.spool:
            self.spool.write_state(applied=self.spool.count)

    def _start_system_metrics(self) -> None:
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=self.tracking.system_metrics_interval_s,
                                                 tracking_uri=self.uri)
            self._monitor.start()
        except Exception as err:  # noqa: BLE001 - psutil missing etc.: training matters more
            log.warning("system metrics not logged: %s", err)
            self._monitor = None

    def _stop_system_metrics(self) -> None:
        if self._monitor is not None:
            try:
                self._monitor.finish()
            except Exception:  # noqa: BLE001
                pass
            self._monitor = None

    # -- the MetricLogger protocol
    def log_params(self, params: Mapping[str, Any]) -> None:
        self._emit({"op": "params", "params": {k: str(v)[:6000] for k, v in params.items()}})

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._emit({"op": "metrics", "step": int(step), "ts": int(time.time() * 1000),
                    "metrics": {k: float(v) for k, v in metrics.items()}})

    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None:
        self._emit({"op": "artifact", "path": str(Path(path).resolve()), "artifact_path": artifact_path})

    def log_figure(self, figure: Any, name: str) -> None:
        """Save the figure under `<run_dir>/figures/` (kept even offline) and log it as an artifact."""
        base = self.run_dir if self.run_dir is not None else Path.cwd()
        out = base / "figures" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, dpi=110, bbox_inches="tight")
        sub = str(Path("figures", name).parent)
        self.log_artifact(out, sub)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self._emit({"op": "tags", "tags": {k: str(v)[:5000] for k, v in tags.items()}})

    def log_datasets(self, specs: List[Dict[str, Any]]) -> None:
        """Dataset inputs (see `dataset_specs`): the run's lineage to its exact shards."""
        if specs:
            self._emit({"op": "inputs", "datasets": specs})

    def close(self, status: str = "FINISHED") -> None:
        self._stop_system_metrics()
        self._emit({"op": "close", "status": status, "ts": int(time.time() * 1000)})
