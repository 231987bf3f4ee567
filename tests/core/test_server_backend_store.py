"""`mmlnb-dist mlflow-server --backend-store ./mlruns` exited 1 with MLflow's raw traceback ("filesystem tracking
backend ... maintenance mode"), while the same value as tracking.uri gets a one-line refusal. Now --backend-store is
checked as tracking.uri is, with the same message, before the server starts (exit 2)."""
from __future__ import annotations

import pytest

from support.cli import run_cli


@pytest.mark.parametrize("store", ["./mlruns", "file:./mlruns", "sqlite://runs/x.db"])
def test_a_backend_store_mlflow_3_cannot_use_is_refused_before_the_server_starts(tmp_path, monkeypatch, store):
    import mmlnb_dist.core.tracking.server as server

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    started = []
    monkeypatch.setattr(server, "serve_foreground", lambda *args: started.append(args) or 0)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["mlflow-server", "--port", str(server.free_port()), "--backend-store", store,
                            "--artifacts-dir", str(tmp_path / "art")])
    assert code == 2, err
    assert f"--backend-store: '{store}' is not a tracking store MLflow 3 can use" in err, err
    assert "sqlite:///PATH" in err, err  # the accepted forms, as for tracking.uri
    assert not started and not any(tmp_path.iterdir())  # nothing started, no folder made


def test_a_sqlite_backend_store_goes_on(tmp_path, monkeypatch):
    import mmlnb_dist.core.tracking.server as server

    started = []
    monkeypatch.setattr(server, "serve_foreground", lambda *args: started.append(args) or 0)
    code, _, err = run_cli(["mlflow-server", "--port", str(server.free_port()), "--backend-store",
                            f"sqlite:///{tmp_path / 'db' / 'mlflow.db'}", "--artifacts-dir", str(tmp_path / "art")])
    assert code == 0 and len(started) == 1, err
    assert (tmp_path / "db").is_dir()  # the store's folder is made for it
