"""A resume without the journal (`tracking.spool=false`) continues the run its folder records, also when reading
that run fails with a server error (a 503): that was taken for "the run is gone", and the resumed steps went into
a new MLflow run, the run's history split in two. Only "no such run" makes a new one."""
from __future__ import annotations

from support.fake_mlflow import URI, install, train_logger


def test_a_server_error_reading_the_recorded_run_does_not_start_a_new_one(tmp_path, monkeypatch):
    store = install(monkeypatch)[URI]
    first = train_logger(tmp_path / "a", spool=False)
    first.log_metrics({"train/loss": 1.0}, step=1)
    first.close("KILLED")
    store.fail_on = "get_run"
    resumed = train_logger(tmp_path / "a", resume=True, spool=False)
    store.fail_on = None
    resumed.log_metrics({"train/loss": 0.5}, step=2)
    resumed.close()
    assert resumed.run_id == first.run_id and list(store.runs) == [first.run_id]
    assert [(step, value) for _, _, step, value in store.metrics] == [(1, 1.0), (2, 0.5)]


def test_a_resume_through_a_server_error_still_counts_its_resume(tmp_path, monkeypatch):
    """The run's `resume_count` is counted on from the folder's record when the run cannot be read: it was left as
    it was, so the run read as resumed once fewer than it was (and each later resume counted from the stale tag)."""
    store = install(monkeypatch)[URI]
    train_logger(tmp_path / "a", spool=False).close("KILLED")
    once = train_logger(tmp_path / "a", resume=True, spool=False)
    once.close("KILLED")
    assert store.runs[once.run_id].data.tags["resume_count"] == "1"
    store.fail_on = "get_run"
    twice = train_logger(tmp_path / "a", resume=True, spool=False)
    store.fail_on = None
    twice.close("KILLED")
    assert store.runs[once.run_id].data.tags["resume_count"] == "2"
    thrice = train_logger(tmp_path / "a", resume=True, spool=False)
    thrice.close()
    assert thrice.run_id == once.run_id and store.runs[once.run_id].data.tags["resume_count"] == "3"
