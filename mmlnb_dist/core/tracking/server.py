"""The tracking server: which URI a run logs to, how a dead server is survived, and a local server to start.

`mmlnb-dist mlflow-server` and concurrent Tune searches start a local `mlflow server` bound to 127.0.0.1.
"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

from ..errors import UserError
from ..sections import TrackingConfig

SERVER_WARNINGS = "ignore::UserWarning:mlflow.server.fastapi_app"
"""Filter for the `mlflow server` process: its import of starlette's WSGI middleware warns of a deprecation on every
start, which no user of the server can act on."""


def default_tracking_uri(tracking: TrackingConfig, output_dir: Path) -> str:
    """`tracking.uri`, else the embedded default: a SQLite store beside the runs in `output_dir` (MLflow 3
    refuses the old file store)."""
    if tracking.uri:
        return absolute_sqlite_uri(tracking.uri)
    db = (Path(output_dir) / "mlflow.db").resolve()
    return f"sqlite:///{db}"


def sqlite_store(uri: str) -> Optional[Path]:
    """The file of a `sqlite:///PATH` store (PATH as written: relative to the working folder when not absolute),
    None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


def lower_scheme(uri: str) -> str:
    """`uri` with its scheme in lower case, as MLflow opens it: the config takes `SQLITE:///x.db`, which SQLAlchemy
    refused (no dialect `SQLITE`: the whole training ran offline), and `HTTP://` skipped the `/health` check."""
    scheme, sep, rest = uri.partition("://")
    return f"{scheme.lower()}{sep}{rest}" if sep else uri


def absolute_sqlite_uri(uri: str) -> str:
    """`uri` (its scheme in lower case) with a relative SQLite path made absolute (from the working folder):
    recorded as written, a `register` or `tracking sync` run from another folder opened a new, empty store there.
    A server URI loses a trailing slash (`http://host:5000/`, as a browser shows it, is the same server: compared
    as another store, `tracking sync --uri` sent its run the whole journal again)."""
    uri = lower_scheme(uri)
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    path = sqlite_store(uri)
    if path is None or path.is_absolute() or str(path) == ":memory:":
        return uri
    query = uri.partition("?")[1] + uri.partition("?")[2]
    return f"sqlite:///{path.resolve()}{query}"


def open_client(uri: str, registry_uri: Optional[str] = None):
    """An `mlflow.MlflowClient` on `uri`. A SQLite store is opened under an flock on `<db>.lock` beside it: MLflow
    creates (migrates) a new store's schema on first open, and two commands started together into one fresh
    run.output_dir did so at once; the second crashed ("table _alembic_tmp_experiments already exists")."""
    import fcntl

    import mlflow

    path = sqlite_store(uri)
    lock = None
    if path is not None and str(path) != ":memory:":
        try:  # MLflow makes a new store's folder: made here first, the lock beside it serializes that store too
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(f"{path}.lock", "a")
        except OSError:  # no folder to lock in: MLflow's own error says so
            pass
    if lock is None:
        return mlflow.MlflowClient(tracking_uri=uri, registry_uri=registry_uri)
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return mlflow.MlflowClient(tracking_uri=uri, registry_uri=registry_uri)


STORE_REMEDY = "put the file back or pass its tracking URI (--uri sqlite:////ABSOLUTE/PATH)"
"""What `require_sqlite_store` tells a user of the tracking commands to do (the pipeline names tracking.uri)."""


def require_sqlite_store(uri: str, what: str, remedy: str = STORE_REMEDY) -> None:
    """Refuse (`UserError`, naming the file) a recorded SQLite store that is not there: MLflow would create an
    empty one in its place, and `what` (a run it records) would seem gone, or be made anew, orphaning the real one.
    `remedy`: what the caller's user can do about it (a command's flag, or a config key)."""
    path = sqlite_store(uri)
    if path is not None and str(path) != ":memory:" and not path.is_file():
        raise UserError(f"{what} is recorded in the MLflow store {path.resolve() if not path.is_absolute() else path} "
                        f"({uri}), which does not exist (moved, deleted, or a relative path read from another "
                        f"folder); {remedy}")


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
    """The id of experiment `name`, created on first use. A deleted one (it keeps its name) is refused with the
    ways out: MLflow's own refusal ("must be in the 'active' state") named neither."""
    exp = client.get_experiment_by_name(name)
    if exp is not None and exp.lifecycle_stage == "deleted":
        raise UserError(f"experiment '{name}' was deleted: `mlflow experiments restore --experiment-id "
                        f"{exp.experiment_id}` (MLFLOW_TRACKING_URI: this store) or another tracking.experiment")
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


def _server_env() -> dict:
    """This process's environment for an `mlflow server` child, with `SERVER_WARNINGS` added after a user's own
    PYTHONWARNINGS filters (kept, not replaced)."""
    own = os.environ.get("PYTHONWARNINGS")
    return {**os.environ, "PYTHONWARNINGS": f"{own},{SERVER_WARNINGS}" if own else SERVER_WARNINGS}


def http_uri(host: str, port: int) -> str:
    """`http://HOST:PORT`, an IPv6 address in brackets (`http://[::1]:5000`: unbracketed, its colons read as a port)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def client_host(host: str) -> Tuple[str, str]:
    """(where to poll a server bound to `host`, what host to tell its clients): a wildcard bind (0.0.0.0, ::) is
    polled on loopback and named by this machine's host name (`http://0.0.0.0:P` is no address a client can use)."""
    import ipaddress
    import socket

    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host, host
    if not address.is_unspecified:
        return host, host
    return ("127.0.0.1" if address.version == 4 else "::1"), socket.gethostname()


def exposed(host: str) -> bool:
    """Whether a server bound to `host` is reachable from other machines (any address it resolves to is not
    loopback); a host that does not resolve is not (`require_free_port` refuses it)."""
    import ipaddress
    import socket

    try:
        addresses = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False
    return any(not ipaddress.ip_address(a[4][0].split("%")[0]).is_loopback for a in addresses)


def require_free_port(host: str, port: int) -> None:
    """Raise a `UserError` when the server could not bind `port` on `host`. `mlflow server` reports a bind error only
    in its log and exits 0, and runs pointed at a port something holds would log to it (another server: another
    store). Each address `host` resolves to is bound, in its own family (IPv6 too), as the server binds them; a port
    in use says so, and a host that does not resolve or is not this machine's names --host, not --port."""
    import socket

    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise UserError(f"--host {host}: cannot resolve it to an address of this machine ({err.strerror}); give a "
                        f"name or address this machine has (default 127.0.0.1, ::1 for IPv6)") from None
    for family, kind, proto, _, address in addresses:
        try:
            probe = socket.socket(family, kind, proto)
        except OSError:  # a family this machine lacks (no IPv6): the server skips it too
            continue
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closing port is free
            try:
                probe.bind(address)
            except OSError as err:
                _refuse_bind(host, port, address[0], err)


def _refuse_bind(host: str, port: int, address: str, err: OSError) -> None:
    """The `UserError` for a failed bind of `port` on `address` (what `host` resolved to), worded by its cause."""
    if err.errno == errno.EADDRINUSE:
        held_by = " by an MLflow server" if server_reachable(http_uri(address, port), 2.0) else ""
        raise UserError(f"port {port} on {host} is in use{held_by} ({err.strerror}); runs pointed at it would "
                        f"log to whatever holds it: choose another with --port") from None
    if err.errno == errno.EADDRNOTAVAIL:
        raise UserError(f"--host {host}: {address} is not an address of this machine ({err.strerror}); bind to one "
                        f"of its own (default 127.0.0.1, ::1 for IPv6, or an interface's address)") from None
    raise UserError(f"--host {host} --port {port}: cannot bind {address} port {port} ({err.strerror})") from None


def serve_foreground(cmd: List[str], uri: str, ready_line: str) -> int:
    """Run the `mlflow server` command `cmd` in the foreground and print `ready_line` once `uri` answers /health
    (not before: a user copies the URI from it). Returns the server's exit code; 0 on Ctrl-C."""
    proc = subprocess.Popen(cmd, env=_server_env())
    try:
        while proc.poll() is None:
            if server_reachable(uri, 1.0):
                print(ready_line, flush=True)
                return proc.wait()
            time.sleep(0.5)
        return proc.returncode or 1  # it stopped before answering: its own output above says why
    except KeyboardInterrupt:  # a terminal's Ctrl-C reaches the server too; a `kill -INT` of this process does not
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return 0


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
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env=_server_env())
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
