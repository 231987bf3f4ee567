"""`mmlnb-dist mlflow-server`: on a port something else held it printed "MLflow server on http://127.0.0.1:P ...;
use tracking.uri=..." and exited 0 after uvicorn's bind error, so runs pointed at that URI logged to whatever held
the port (another MLflow server: another store) or failed later. Now a port in use is refused before the server
starts, naming the port and --port; the line to copy is printed once the server answers /health; and the
deprecation warning MLflow's own import raises (nothing a user can act on) stays off the console."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from mmlnb_dist.core.tracking.server import free_port, server_reachable

from support.cli import run_cli


def test_a_port_in_use_is_refused_before_the_server_starts(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, out, err = run_cli(["mlflow-server", "--port", str(port), "--backend-store",
                                  f"sqlite:///{tmp_path / 'mlflow.db'}", "--artifacts-dir", str(tmp_path / "art")])
    assert code == 2, err
    assert f"port {port} on 127.0.0.1 is in use" in err and "--port" in err
    assert "tracking.uri" not in out


@pytest.mark.slow
def test_the_uri_to_use_is_printed_once_the_server_answers_and_ctrl_c_stops_it(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "mmlnb_dist.cli", "mlflow-server", "--port", str(port),
                             "--backend-store", f"sqlite:///{tmp_path / 'mlflow.db'}",
                             "--artifacts-dir", str(tmp_path / "art")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        seen = []
        for line in proc.stdout:  # MLflow prints lines of its own first
            seen.append(line)
            if "tracking.uri=" in line:
                break
        assert f"use tracking.uri=http://127.0.0.1:{port}" in seen[-1], seen
        assert server_reachable(f"http://127.0.0.1:{port}", 2.0)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        deadline = time.time() + 60
        while proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    assert "DeprecationWarning" not in err, err
