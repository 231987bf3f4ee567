"""Mutation-audit guards of the tracking-server helpers (`core/tracking/server.py`): SQLite URIs with options or
in memory, a user's own MLflow request settings, local stores being reachable, an existing experiment reused, the
server's warning filters added to a user's, and a server that stops before answering reported as failed."""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.sections import TrackingConfig
from mmlnb_dist.core.tracking import server


def test_sqlite_uris_keep_their_options_and_memory_stays_memory(tmp_path, monkeypatch):
    """The store file of `sqlite:///rel.db?timeout=5` is `rel.db`; made absolute the URI keeps `?timeout=5`; an
    in-memory store is neither made absolute nor refused as missing."""
    monkeypatch.chdir(tmp_path)
    here = tmp_path.resolve()
    assert server.sqlite_store("sqlite:///rel.db?timeout=5") == Path("rel.db")
    assert server.absolute_sqlite_uri("sqlite:///rel.db?timeout=5") == f"sqlite:///{here}/rel.db?timeout=5"
    assert server.absolute_sqlite_uri("sqlite:///:memory:") == "sqlite:///:memory:"
    server.require_sqlite_store("sqlite:///:memory:", "run x")
    with pytest.raises(UserError, match="gone.db"):
        server.require_sqlite_store("sqlite:///gone.db", "run x")
    cfg = TrackingConfig(uri="sqlite:///rel.db")
    assert server.default_tracking_uri(cfg, tmp_path / "elsewhere") == f"sqlite:///{here}/rel.db"


def test_a_users_own_request_settings_win_and_the_timeout_is_at_least_a_second(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "")  # restored after the test, then unset for it
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT")
    server.limit_http_retries(TrackingConfig(request_max_retries=0, request_timeout_s=0.2))
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "9"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "1"


def test_a_local_store_is_always_reachable():
    assert server.server_reachable("sqlite:////nowhere/mlflow.db") is True


def test_an_existing_experiment_is_reused_and_a_new_one_keeps_artifacts_under_the_root(tmp_path):
    made = []
    client = SimpleNamespace(
        get_experiment_by_name=lambda name: SimpleNamespace(experiment_id="7", lifecycle_stage="active")
        if name == "old" else None,
        create_experiment=lambda name, artifact_location=None: made.append((name, artifact_location)) or "8")
    assert server.get_or_create_experiment(client, "old", tmp_path / "art") == "7" and made == []
    assert server.get_or_create_experiment(client, "new", tmp_path / "art") == "8"
    assert made == [("new", (tmp_path / "art").resolve().as_uri())] and (tmp_path / "art").is_dir()


def test_the_servers_warning_filter_is_added_to_a_users_own(monkeypatch):
    monkeypatch.setenv("PYTHONWARNINGS", "error")
    assert server._server_env()["PYTHONWARNINGS"] == f"error,{server.SERVER_WARNINGS}"


def test_a_server_that_stops_before_answering_is_a_failure_even_with_exit_code_0(monkeypatch, capsys):
    monkeypatch.setattr(server, "server_reachable", lambda *a, **k: False)
    assert server.serve_foreground([sys.executable, "-c", "pass"], "http://127.0.0.1:1", "ready") == 1
    assert "ready" not in capsys.readouterr().out


def test_an_ipv6_address_is_bracketed_in_its_uri():
    assert server.http_uri("::1", 5000) == "http://[::1]:5000"
    assert server.http_uri("127.0.0.1", 5000) == "http://127.0.0.1:5000"


def test_a_refused_bind_is_worded_by_its_cause(monkeypatch):
    """An address not of this machine names --host; a port in use says when an MLflow server holds it."""
    monkeypatch.setattr(server, "server_reachable", lambda *a, **k: True)
    refused = OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
    with pytest.raises(UserError, match="--host 10.9.9.9: 10.9.9.9 is not an address of this machine"):
        server._refuse_bind("10.9.9.9", 5000, "10.9.9.9", refused)
    with pytest.raises(UserError, match="port 5000 on h is in use by an MLflow server"):
        server._refuse_bind("h", 5000, "10.9.9.9", OSError(errno.EADDRINUSE, "Address in use"))
