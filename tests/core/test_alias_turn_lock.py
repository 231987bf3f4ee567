"""Where `alias_turn` keeps its lock for a tracking server: in the shared temporary folder a lock file made by one
OS user (mode 0644) refused a second user's registration to the same server (PermissionError). It is now in a
per-user folder (0700): it serialises one user's jobs on one host."""
from __future__ import annotations

import os
import stat
import tempfile

from mmlnb_dist.core.tracking.versions import alias_turn


def test_a_server_uris_alias_lock_is_in_a_per_user_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with alias_turn("http://127.0.0.1:5000", "clip-nb"):
        locks = [p for p in tmp_path.rglob("*.lock")]
    assert len(locks) == 1, locks
    folder = locks[0].parent
    assert folder.parent == tmp_path and folder.name.startswith("mmlnb-dist-"), folder
    if hasattr(os, "getuid"):
        assert folder.name == f"mmlnb-dist-{os.getuid()}"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_sqlite_stores_alias_lock_stays_beside_it(tmp_path):
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    with alias_turn(f"sqlite:///{db}", "clip-nb"):
        locks = [p for p in tmp_path.rglob("*.lock")]
    assert [p.parent for p in locks] == [db.parent]
