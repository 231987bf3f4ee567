"""Which tracking URIs a config accepts and how they are recorded. A relative `sqlite:///rel.db` used to be recorded
as written, so `register`/`tracking sync` run from another folder opened a new empty store there (sync then made a
new run in it and rewrote the journal: the real run orphaned); a malformed URI passed `config validate` and then
crashed training with a raw traceback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.core.tracking import build_logger

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"


def _cfg(output_dir: Path, *extra: str):
    return load_config(CPU_DEMO, [f"run.output_dir={output_dir}", "tracking.backends=[mlflow]",
                                  "tracking.log_environment=false", "run.name=t", *extra])


def _record(run_dir: Path):
    return json.loads((run_dir / "tracking" / "train.json").read_text())


def test_a_relative_sqlite_uri_is_recorded_as_the_absolute_file_and_synced_from_anywhere(tmp_path, monkeypatch):
    (tmp_path / "here").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    cfg = _cfg(tmp_path / "runs", "tracking.uri=sqlite:///rel.db")
    run_dir = tmp_path / "runs" / "t"
    logger = build_logger(cfg.tracking, cfg.run, 0, run_dir, "train")
    logger.log_metrics({"train/loss": 1.0}, step=1)
    logger.close()
    recorded = _record(run_dir)
    assert recorded["tracking_uri"] == f"sqlite:///{(tmp_path / 'here' / 'rel.db').resolve()}"

    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["tracking", "sync", str(run_dir)]) == 0
    assert _record(run_dir)["run_id"] == recorded["run_id"]  # the same run, not a new one in a new store
    assert not (tmp_path / "elsewhere" / "rel.db").exists()


def test_sync_and_register_refuse_a_recorded_sqlite_store_that_is_gone_naming_it(tmp_path, capsys):
    cfg = _cfg(tmp_path / "runs", f"tracking.uri=sqlite:///{tmp_path / 'store.db'}")
    run_dir = tmp_path / "runs" / "t"
    logger = build_logger(cfg.tracking, cfg.run, 0, run_dir, "train")
    logger.log_metrics({"train/loss": 1.0}, step=1)
    logger.close()
    run_id = _record(run_dir)["run_id"]
    (tmp_path / "store.db").rename(tmp_path / "moved.db")
    with open(run_dir / "tracking" / "train.jsonl", "a") as fh:  # something left to send
        fh.write(json.dumps({"op": "tags", "tags": {"late": "1"}}) + "\n")
    capsys.readouterr()
    assert main(["tracking", "sync", str(run_dir)]) != 0
    assert str(tmp_path / "store.db") in capsys.readouterr().err
    assert _record(run_dir)["run_id"] == run_id and not (tmp_path / "store.db").exists()
    assert main(["register", "--run", str(run_dir), "--name", "nb"]) == 2
    assert str(tmp_path / "store.db") in capsys.readouterr().err
    assert not (tmp_path / "store.db").exists()


@pytest.mark.parametrize("uri", ["file:./mlruns", "./mlruns", "sqlite://runs/x.db", "htp://host:5000", "http://"])
def test_a_malformed_tracking_uri_is_refused_by_the_config_naming_the_field(tmp_path, uri, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(ConfigError, match=r"tracking\.uri.*sqlite:///"):
        _cfg(tmp_path / "runs", f"tracking.uri={uri}")


@pytest.mark.parametrize("uri", ["sqlite:////abs/x.db", "http://127.0.0.1:5000", "https://mlflow.example.org",
                                 "postgresql://u@db/mlflow", "mysql+pymysql://u@db/mlflow"])
def test_the_accepted_tracking_uri_forms_pass(tmp_path, uri):
    assert _cfg(tmp_path / "runs", f"tracking.uri={uri}").tracking.uri == uri


@pytest.mark.parametrize("uri, stored", [("HTTP://host:5000", "http://host:5000"), ("SQLITE:///x.db", "sqlite:///x.db"), (" sqlite:///x.db ", "sqlite:///x.db"),
                                         ("databricks://profile", "databricks://profile")])
def test_scheme_case_and_surrounding_spaces_do_not_refuse_a_store(tmp_path, uri, stored):
    assert _cfg(tmp_path / "runs", f"tracking.uri={uri}").tracking.uri == stored


def test_the_file_store_passes_where_mlflow_is_told_to_open_it(tmp_path, monkeypatch):
    """MLflow 3 opens `file:` stores with MLFLOW_ALLOW_FILE_STORE=true: a config for such a setup loads."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert _cfg(tmp_path / "runs", "tracking.uri=file:./mlruns").tracking.uri == "file:./mlruns"

