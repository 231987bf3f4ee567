"""`mmlnb-dist mlflow-server --host 0.0.0.0` printed `use tracking.uri=http://0.0.0.0:PORT` (no client can use that
address) and said nothing about a server without authentication reachable from the network. Now a wildcard host
prints this machine's name in the URI line (and polls the server on loopback), and any non-loopback host warns once."""
from __future__ import annotations

import logging
import socket

import pytest

from support.cli import run_cli


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _serve(tmp_path, monkeypatch, host):
    import mmlnb_dist.core.tracking.server as server

    started = {}
    monkeypatch.setattr(server, "serve_foreground",
                        lambda cmd, uri, ready_line: started.update(cmd=cmd, uri=uri, ready_line=ready_line) or 0)
    seen = _Lines()
    logger = logging.getLogger("mmlnb_dist.commands.tracking")
    logger.addHandler(seen)
    try:
        port = server.free_port()
        code, _, err = run_cli(["mlflow-server", "--host", host, "--port", str(port), "--backend-store",
                                f"sqlite:///{tmp_path / 'mlflow.db'}", "--artifacts-dir", str(tmp_path / "art")])
    finally:
        logger.removeHandler(seen)
    assert code == 0, err
    return port, started, seen.lines


def test_a_wildcard_host_prints_the_machines_name_and_warns(tmp_path, monkeypatch):
    port, started, warnings = _serve(tmp_path, monkeypatch, "0.0.0.0")
    assert f"use tracking.uri=http://{socket.gethostname()}:{port}" in started["ready_line"], started
    assert "0.0.0.0:" not in started["ready_line"].split("use tracking.uri=")[1]
    assert started["uri"] == f"http://127.0.0.1:{port}"  # polled where it answers
    assert started["cmd"][started["cmd"].index("--host") + 1] == "0.0.0.0"
    assert len(warnings) == 1 and "no authentication" in warnings[0] and "0.0.0.0" in warnings[0], warnings


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_loopback_host_is_not_warned_about(tmp_path, monkeypatch, host):
    port, started, warnings = _serve(tmp_path, monkeypatch, host)
    assert f"use tracking.uri=http://{host}:{port}" in started["ready_line"]
    assert warnings == []
