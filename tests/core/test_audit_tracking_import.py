"""Mutation-audit guards of `tracking import` (`core/tracking/folder_import.py`): what is refused by name, where
the run goes by default, what it is called, when it started and ended, and its config as an artifact. In-memory
MLflow stores (`support.fake_mlflow`) keep them fast."""
from __future__ import annotations

import os

import pytest

from support.fake_mlflow import URI, install

from mmlnb_dist.core.tracking import journal
from mmlnb_dist.core.tracking.folder_import import FolderImportError, import_run_folder


@pytest.fixture
def stores(monkeypatch):
    return install(monkeypatch)


def _folder(tmp_path, config="run: {name: r}\ntracking: {uri: 'http://tracking.invalid:5000'}\n",
            metrics='{"step": 1, "a": 0.5}\n'):
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(config)
    (run_dir / "metrics.jsonl").write_text(metrics)
    return run_dir


@pytest.mark.parametrize("line", ["[1, 2]", '"text"', '{"a": 1.0}', '{"step": 1, "a": "x"}'])
def test_a_line_that_is_no_metric_record_is_refused_naming_file_and_line(tmp_path, stores, line):
    run_dir = _folder(tmp_path, metrics='{"step": 1, "a": 0.5}\n' + line + "\n")
    with pytest.raises(FolderImportError, match=r"metrics\.jsonl:2: not a metric record"):
        import_run_folder(run_dir)
    assert stores[URI].runs == {} and not (run_dir / "tracking").exists()


def test_a_folder_that_records_a_run_without_a_journal_is_not_imported_again(tmp_path, stores):
    """A run logged with `tracking.spool=false` keeps only its run record: it is tracked, so not imported twice."""
    run_dir = _folder(tmp_path)
    journal.write_run_record(journal.run_record_path(run_dir, "train"), run_id="abc", tracking_uri=URI)
    with pytest.raises(FolderImportError, match="already has an MLflow run.*abc"):
        import_run_folder(run_dir)
    assert stores[URI].runs == {}


def test_a_folder_that_kept_no_metrics_is_refused_by_name(tmp_path, stores):
    run_dir = _folder(tmp_path)
    (run_dir / "metrics.jsonl").unlink()
    with pytest.raises(FolderImportError, match="kept no metrics"):
        import_run_folder(run_dir)


def test_the_default_store_and_name_and_the_runs_times_come_from_the_folder(tmp_path, stores):
    """Without tracking.uri the run goes to the SQLite store beside the run folder (where training would have
    logged); a config without run.name names the run after its folder; the run starts when config.yaml was written
    and ends when metrics.jsonl last was; config.yaml is the run's artifact."""
    run_dir = _folder(tmp_path, config="seed: 1\n")
    os.utime(run_dir / "config.yaml", (1_000, 1_000))
    os.utime(run_dir / "metrics.jsonl", (2_000, 2_000))
    result = import_run_folder(run_dir)
    assert result["uri"] == f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    store = stores[result["uri"]]
    run = store.runs[result["run_id"]]
    assert run.info.run_name == "r1-train"
    assert (run.info.start_time, run.info.end_time) == (1_000_000, 2_000_000)
    assert store.artifacts == [(result["run_id"], "config.yaml", None)]


def test_a_server_that_is_down_leaves_the_journal_for_a_sync_and_says_so(tmp_path, stores):
    """The import is refused naming `tracking sync`, which later makes the run (named after run.name `r`, not
    the folder `r1`)."""
    run_dir = _folder(tmp_path)
    stores[URI].down = True
    with pytest.raises(FolderImportError, match="tracking sync"):
        import_run_folder(run_dir)
    stores[URI].down = False
    result = journal.upload(journal.Spool.for_stage(run_dir, "train"))
    assert result["created"] and stores[URI].runs[result["run_id"]].info.run_name == "r-train"
