"""The metric-logger interface: one small protocol, backends chosen by config, the rank-0 rule inside.

Training loops call `logger.log_metrics(...)` unconditionally on every rank; `build_logger` hands ranks
other than 0 a logger that does nothing, so no loop ever asks "am I rank 0?" before logging.

The MLflow backend never stops a run: every call is first appended to `<run_dir>/mlflow_spool.jsonl`
(an append-only journal), then sent. When the tracking server cannot be reached (at start or mid-run) the
logger warns once, stops sending and keeps journaling; `mmlnb-dist tracking sync RUN_DIR` replays the
journal later (`sync_run_dir`), into the same run when it exists, else into a new one.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Protocol

from .config import Config, TrackingConfig, flatten, save_config

SPOOL_FILE = "mlflow_spool.jsonl"
STATE_FILE = "mlflow_run.json"
PACKAGES = ("torch", "torchvision", "deepspeed", "transformers", "peft", "mlflow", "ray", "webdataset",
            "torchmetrics", "pydantic", "numpy")


class MetricLogger(Protocol):
    wants_figures: bool  # False when no backend keeps pictures: callers skip drawing them

    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...
    def log_artifact(self, path: Path, artifact_path: Optional[str] = None) -> None: ...
    def log_figure(self, figure: Any, name: str) -> None: ...
    def set_tags(self, tags: Mapping[str, str]) -> None: ...
    def close(self, status: str = "FINISHED") -> None: ...


class NullLogger:
    """What every rank but 0 gets."""

    run_id: Optional[str] = None
    wants_figures: bool = False

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


def limit_http_retries(tracking: Optional[TrackingConfig] = None) -> None:
    """Keep a dead server from stalling the process: MLflow's default is 7 retries with backoff (minutes).

    MLflow reads these environment variables on every request; `setdefault` leaves a user's own choice alone.
    """
    tracking = tracking or TrackingConfig()
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(tracking.request_max_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(max(1, tracking.request_timeout_s))))


def server_reachable(uri: str, timeout_s: float = 3.0) -> bool:
    """True for local stores; for http(s) URIs, whether `/health` answers within `timeout_s` (no retries)."""
    if not uri.startswith(("http://", "https://")):
        return True
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as resp:
            return resp.status == 200
    except Exception:
        return False


# ----------------------------------------------------------------------------------------------- context
def environment_tags() -> Dict[str, str]:
    """Git commit, package versions and the device: what it takes to reproduce a run."""
    from importlib import metadata

    tags: Dict[str, str] = {"python": platform.python_version(), "host.platform": platform.platform()}
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        if commit:
            tags["mlflow.source.git.commit"] = commit
            tags["git.commit"] = commit
            tags["git.dirty"] = str(bool(dirty)).lower()
    except (OSError, subprocess.SubprocessError):
        pass
    for name in PACKAGES:
        try:
            tags[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    tags["device"] = _device_name()
    return tags


def _device_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            n = torch.cuda.device_count()
            return f"cuda x{n}: {torch.cuda.get_device_name(0)}"
    except Exception:  # torch missing or a broken driver: the device tag is informative only
        pass
    return f"cpu: {platform.processor() or platform.machine()} x{os.cpu_count()}"


def dataset_specs(shard_dir: Path) -> List[Dict[str, Any]]:
    """One JSON-ready dataset description per split of a shard set: name, manifest digest, counts, source.

    The digest is the manifest's SHA-256 (which lists every shard's own SHA-256), so equal digests mean
    byte-identical shards and descriptions; `provenance` says which VLM/adapter wrote the descriptions.
    """
    manifest_path = Path(shard_dir) / "manifest.json"
    if not manifest_path.is_file():
        return []
    raw = manifest_path.read_bytes()
    manifest = json.loads(raw)
    digest = hashlib.sha256(raw).hexdigest()
    specs = []
    for split, info in (manifest.get("splits") or {}).items():
        profile = {
            "num_samples": info.get("num_samples"),
            "class_counts": info.get("class_counts"),
            "num_shards": len(info.get("shards", [])),
            "classes": manifest.get("classes"),
            "has_descriptions": manifest.get("has_descriptions"),
            "manifest_sha256": digest,
            "provenance": manifest.get("provenance"),
        }
        specs.append({
            "name": f"{Path(shard_dir).resolve().name}:{split}",  # MLflow merges inputs of equal name+digest
            "digest": digest[:16],
            "source": str(Path(shard_dir).resolve()),
            "profile": profile,
            "context": split,
        })
    return specs


def _dataset_inputs(specs: List[Dict[str, Any]]):
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for s in specs:
        ds = Dataset(name=s["name"], digest=s["digest"], source_type="local",
                     source=json.dumps({"uri": s["source"]}), profile=json.dumps(s["profile"]))
        inputs.append(DatasetInput(ds, tags=[InputTag("mlflow.data.context", s["context"])]))
    return inputs


# ------------------------------------------------------------------------------------------- the journal
class Spool:
    """Append-only journal of MLflow calls plus a small state file (run id, how many events were applied)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / SPOOL_FILE
        self.state_path = self.run_dir / STATE_FILE
        self.count = sum(1 for _ in self.events())

    def events(self) -> Iterator[Dict[str, Any]]:
        if not self.path.is_file():
            return
        with open(self.path) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    # A line cut short by a crash: everything before it is still good.
                    return

    def append(self, event: Dict[str, Any]) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(event) + "\n")
        self.count += 1

    def state(self) -> Dict[str, Any]:
        if self.state_path.is_file():
            return json.loads(self.state_path.read_text())
        return {}

    def write_state(self, **updates: Any) -> None:
        state = {**self.state(), **updates}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_path)


def _get_or_create_experiment(client, name: str, artifact_root: Optional[Path]) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if artifact_root is not None:
        artifact_root.mkdir(parents=True, exist_ok=True)
        location = artifact_root.resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


def _apply(client, run_id: str, event: Dict[str, Any]) -> None:
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
            warnings.warn(f"artifact {path} no longer exists; not uploaded")
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
            exp_id = _get_or_create_experiment(self.client, tracking.experiment, Path(artifact_root))
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
            # One line on stderr (not `warnings`, which filters can hide, e.g. in Ray workers).
            print(f"WARNING: MLflow tracking disabled for this run: {reason}{where}", file=sys.stderr,
                  flush=True)

    def _record(self, event: Dict[str, Any]) -> None:
        if self.spool:
            self.spool.append(event)

    def _emit(self, event: Dict[str, Any]) -> None:
        self._record(event)
        if not (self.online and self.run_id):
            return
        try:
            _apply(self.client, self.run_id, event)
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
            warnings.warn(f"system metrics not logged: {err}")
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
        return next((lg.run_id for lg in self.loggers if getattr(lg, "run_id", None)), None)

    @property
    def wants_figures(self) -> bool:
        return any(lg.wants_figures for lg in self.loggers)

    @property
    def mlflow(self) -> Optional[MLflowLogger]:
        """The MLflow backend, if configured (for callers that need the run id or the client)."""
        return next((lg for lg in self.loggers if isinstance(lg, MLflowLogger)), None)


def build_logger(cfg: Config, rank: int, run_dir: Path, stage: str,
                 tags: Optional[Mapping[str, str]] = None) -> MetricLogger:
    """The logger for one run of one stage. Ranks other than 0 get a `NullLogger`.

    The MLflow run gets: the flattened config as params, the resolved YAML as an artifact, git commit,
    package versions and device as tags, and the shard set as dataset inputs.
    """
    if rank != 0:
        return NullLogger()
    run_dir = Path(run_dir)
    loggers: List[Any] = []
    if "stdout" in cfg.tracking.backends:
        loggers.append(StdoutLogger(run_dir))
    if "mlflow" in cfg.tracking.backends:
        base_tags = {"stage": stage, "run_dir": str(run_dir.resolve()), **dict(tags or {})}
        if cfg.tracking.log_environment:
            base_tags.update(environment_tags())
        ml = MLflowLogger(
            cfg.tracking, default_tracking_uri(cfg), cfg.run.output_dir / "mlartifacts",
            run_name=f"{cfg.run.name}-{stage}", tags=base_tags, run_dir=run_dir,
        )
        loggers.append(ml)
        ml.log_params(flatten(cfg))
        resolved = save_config(cfg, run_dir / "config.yaml")
        ml.log_artifact(resolved)
        if cfg.tracking.log_dataset:
            ml.log_datasets(dataset_specs(cfg.data.shards))
    return MultiLogger(loggers)


# ------------------------------------------------------------------------------------------------- sync
def sync_run_dir(run_dir: Path, uri: Optional[str] = None, experiment: Optional[str] = None) -> Dict[str, Any]:
    """Upload what a run journaled but could not send. Idempotent: a second call sends nothing.

    Reuses the run recorded in `mlflow_run.json` when it exists at `uri` (default: the recorded URI),
    sending only events after the last applied one; otherwise creates a run and replays the whole journal.
    Returns {"run_id", "sent", "created", "uri"}.
    """
    import mlflow

    run_dir = Path(run_dir)
    spool = Spool(run_dir)
    if spool.count == 0:
        raise FileNotFoundError(f"no MLflow journal in {run_dir} (expected {run_dir / SPOOL_FILE})")
    events = list(spool.events())
    start = next((e for e in events if e["op"] == "start"), None)
    if start is None:
        raise ValueError(f"{spool.path} has no start event")
    state = spool.state()
    uri = uri or state.get("tracking_uri")
    if not uri:
        raise ValueError("no tracking URI recorded for this run; pass one (--uri)")
    limit_http_retries()
    if not server_reachable(uri):
        raise ConnectionError(f"tracking server {uri} is not reachable")
    client = mlflow.MlflowClient(tracking_uri=uri)
    run_id, applied, created = None, 0, False
    if state.get("run_id") and state.get("tracking_uri") == uri:
        try:
            client.get_run(state["run_id"])
            run_id, applied = state["run_id"], int(state.get("applied", 0))
        except Exception:  # noqa: BLE001 - the run is gone (e.g. a fresh server): make a new one
            run_id = None
    if run_id is None:
        exp_id = _get_or_create_experiment(client, experiment or start["experiment"], Path(start["artifact_root"]))
        run = client.create_run(exp_id, run_name=start["run_name"], tags=start.get("tags") or {})
        run_id, applied, created = run.info.run_id, 0, True
        spool.write_state(tracking_uri=uri, experiment=experiment or start["experiment"],
                          run_name=start["run_name"], run_id=run_id, applied=0)
    sent = 0
    for i, event in enumerate(events):
        if i < applied or event["op"] == "start":
            continue
        _apply(client, run_id, event)
        sent += 1
        spool.write_state(applied=i + 1)
    spool.write_state(applied=len(events))
    return {"run_id": run_id, "sent": sent, "created": created, "uri": uri}


# ------------------------------------------------------------------------------------------------ server
def server_command(port: int, backend_store_uri: str, artifacts_dir: Path, host: str = "127.0.0.1",
                   workers: int = 1) -> List[str]:
    """The `mlflow server` command line (bound to localhost unless told otherwise)."""
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
            "--artifacts-destination", Path(artifacts_dir).resolve().as_uri(), "--serve-artifacts",
            "--host", host, "--port", str(port), "--workers", str(workers)]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(backend_store_uri: str, artifacts_dir: Path, port: Optional[int] = None,
                 log_path: Optional[Path] = None, wait_s: float = 90.0):
    """Start a local MLflow server in the background; returns (process, uri) once /health answers."""
    port = port or free_port()
    uri = f"http://127.0.0.1:{port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(server_command(port, backend_store_uri, artifacts_dir), stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + wait_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {proc.returncode}"
                               + (f"; see {log_path}" if log_path else ""))
        if server_reachable(uri, 1.0):
            return proc, uri
        time.sleep(0.5)
    stop_server(proc)
    raise TimeoutError(f"mlflow server on {uri} did not answer /health within {wait_s:.0f} s")


def stop_server(proc) -> None:
    """Stop a server started by `start_server` (its whole process group: gunicorn/uvicorn workers too)."""
    import signal

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
