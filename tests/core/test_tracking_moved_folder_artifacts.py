"""A journal's artifacts are uploaded from the run folder the journal is in. Its artifact events name files by
absolute path, so a run folder moved (to another disk, another machine for `tracking sync`) uploaded nothing
("no longer exists"), and a copied folder (`cp -r runs/a runs/a2`, resumed as a branch) sent its new run the
original folder's files, which the original run has rewritten since."""
from __future__ import annotations

import shutil

import pytest

from support.fake_mlflow import URI, install

from mmlnb_dist.core.sections import TrackingConfig
from mmlnb_dist.core.tracking import mlflow_logger
from mmlnb_dist.core.tracking.journal import sync_run_dir


@pytest.fixture
def servers(monkeypatch):
    return install(monkeypatch)


def _logger(run_dir, resume=False):
    return mlflow_logger.MLflowLogger(TrackingConfig(), URI, run_dir.parent / "mlartifacts", "r-train",
                                      tags={"run_dir": str(run_dir.resolve())}, run_dir=run_dir, stage="train",
                                      resume=resume)


def _run_with_config(run_dir, text):
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(text)
    logger = _logger(run_dir)
    logger.log_artifact(run_dir / "config.yaml")
    logger.log_metrics({"train/loss": 1.0}, step=1)
    logger.close()
    return logger


def test_a_moved_run_folder_uploads_its_artifacts_at_sync(tmp_path, servers):
    servers[URI].down = True  # trained where the server could not be reached
    _run_with_config(tmp_path / "cluster" / "a", "train: {epochs: 1}\n")
    shutil.move(tmp_path / "cluster" / "a", tmp_path / "a")  # copied home, the cluster's folder gone
    servers[URI].down = False
    [result] = sync_run_dir(tmp_path / "a")
    assert "error" not in result
    assert servers[URI].uploaded_from == [(tmp_path / "a" / "config.yaml").resolve()]


def test_a_copied_folder_resumed_as_a_branch_uploads_its_own_files(tmp_path, servers):
    original = _run_with_config(tmp_path / "a", "train: {epochs: 1}\n")
    shutil.copytree(tmp_path / "a", tmp_path / "a2")
    (tmp_path / "a" / "config.yaml").write_text("train: {epochs: 5}\n")  # the original goes on, rewritten
    branch = _logger(tmp_path / "a2", resume=True)
    branch.close()
    assert branch.run_id not in (None, original.run_id)
    sent = [path for (rid, _, _), path in zip(servers[URI].artifacts, servers[URI].uploaded_from)
            if rid == branch.run_id]
    assert sent == [(tmp_path / "a2" / "config.yaml").resolve()]
