"""A `tracking.uri` that is a SQLite path under a FILE (or whose folder cannot be made) was taken for a lost
server: training ran offline and suggested `tracking sync`, which failed the same way. It is now refused when the
config is read, naming tracking.uri; server URIs and stores whose folder is still to be made go on."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"


def _cfg(tmp_path: Path, uri: str):
    return load_config(CPU_DEMO, [f"run.output_dir={tmp_path / 'runs'}", f"tracking.uri={uri}"])


@pytest.mark.parametrize("under", ["a_file/mlflow.db", "a_file/deeper/mlflow.db"])
def test_a_sqlite_store_under_a_file_is_refused_naming_tracking_uri(tmp_path, under):
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path, f"sqlite:///{tmp_path / under}")
    assert "tracking.uri" in str(err.value) and "a_file" in str(err.value) and "not a folder" in str(err.value)


def test_a_sqlite_store_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "db").mkdir()
    with pytest.raises(ConfigError, match="tracking.uri"):
        _cfg(tmp_path, f"sqlite:///{tmp_path / 'db'}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in a read-only folder")
def test_a_sqlite_store_in_a_folder_that_cannot_be_written_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="tracking.uri"):
            _cfg(tmp_path, f"sqlite:///{locked / 'sub' / 'mlflow.db'}")
    finally:
        locked.chmod(0o700)


def test_a_store_whose_folder_is_still_to_be_made_and_a_server_uri_go_on(tmp_path):
    assert _cfg(tmp_path, f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}").tracking.uri.endswith("new/mlflow.db")
    assert _cfg(tmp_path, "http://127.0.0.1:1").tracking.uri == "http://127.0.0.1:1"
