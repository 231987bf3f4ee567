"""A run folder copied before its journal ever reached a server (trained offline, then `cp -r runs/a runs/a2`)
is a run of its own. The run a journal uploads into is found by its start event's digest, which the copy shares:
`tracking sync runs/` sent both folders into one MLflow run (the second's metrics over the first's), and the
register of either read the other's history."""
from __future__ import annotations

import shutil

from support.fake_mlflow import URI, install

from mmlnb_dist.core.sections import TrackingConfig
from mmlnb_dist.core.tracking import mlflow_logger
from mmlnb_dist.core.tracking.journal import recorded_run, sync_run_dir


def _offline_run(run_dir, loss):
    logger = mlflow_logger.MLflowLogger(TrackingConfig(), URI, run_dir.parent / "mlartifacts", "a-train",
                                        tags={"run_dir": str(run_dir.resolve())}, run_dir=run_dir, stage="train")
    logger.log_metrics({"train/loss": loss}, step=1)
    return logger


def test_a_copy_of_an_unsent_journal_syncs_into_a_run_of_its_own(tmp_path, monkeypatch):
    store = install(monkeypatch)[URI]
    store.down = True
    _offline_run(tmp_path / "runs" / "a", 1.0).close()
    shutil.copytree(tmp_path / "runs" / "a", tmp_path / "runs" / "a2")
    store.down = False
    for first in ("a2", "a"):  # the copy synced first: the original still gets the run named after it
        results = sync_run_dir(tmp_path / "runs" / first)
        assert all("error" not in r for r in results)
    a, a2 = (recorded_run(tmp_path / "runs" / name)["run_id"] for name in ("a", "a2"))
    assert a != a2
    assert store.runs[a].data.tags["run_dir"] == str((tmp_path / "runs" / "a").resolve())
    assert store.runs[a2].data.tags["run_dir"] == str((tmp_path / "runs" / "a2").resolve())
    assert sorted(rid for rid, *_ in store.metrics) == sorted([a, a2])  # each its own step 1, once
