"""The tracking server: which URI a run logs to, how a dead server is survived, and a local server to start.

`mmlnb-dist mlflow-server` and concurrent Tune searches start a local `mlflow server` bound to 127.0.0.1.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

from ..sections import TrackingConfig


def default_tracking_uri(tracking: TrackingConfig, output_dir: Path) -> str:
    """`tracking.uri`, else the embedded default: a SQLite store beside the runs in `output_dir` (MLflow 3
    refuses the old file store)."""
    if tracking.uri:
        return tracking.uri
    db = (Path(output_dir) / "mlflow.db").resolve()
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
    except Exception:  # noqa: BLE001 - any failure means: not reachable
        return False


def get_or_create_experiment(client, name: str, artifact_root: Optional[Path]) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if artifact_root is not None:
        artifact_root.mkdir(parents=True, exist_ok=True)
        location = artifact_root.resolve().as_uri()
    return client.create_experiment(name, artifact_location=location)


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
    """Start a local MLflow server in the background; returns (process, uri) once /health answers.

    It lives as long as the command that starts it (concurrent trials log through it): the link to it that MLflow
    prints at the end of every run is dead once the command ends (the runs are in the backing store), so this
    process and the ones it starts after (Ray trials) print none; a user's own setting wins."""
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
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
