"""A journal sent to a second store (`tracking sync --uri OTHER`, or a resume with another tracking.uri) and then
to its first one again: the record beside the journal named only the last store, so the first store's run (found by
its journal tag) was sent the whole journal again from event 0: every metric point it had came twice, every
artifact was uploaded twice. Each store now keeps its run and how much of the journal it acknowledged."""
from __future__ import annotations

import pytest

from support.fake_mlflow import OTHER, URI, install, train_logger

from mmlnb_dist.core.tracking.journal import Spool, upload

@pytest.fixture
def stores(monkeypatch):
    return install(monkeypatch)


def _points(store, run_id):
    return [(key, step) for run, key, step, _ in store.metrics if run == run_id]


def test_a_copy_to_another_store_then_a_resume_at_the_first_sends_each_point_once(tmp_path, stores):
    run_dir = tmp_path / "run"
    first = train_logger(run_dir)
    first.log_metrics({"a": 1.0}, 1)
    first.close()
    copy = upload(Spool.for_stage(run_dir, "train"), OTHER)  # `tracking sync --uri OTHER run`
    assert copy["created"] and _points(stores[OTHER], copy["run_id"]) == [("a", 1)]
    again = train_logger(run_dir, resume=True)
    again.log_metrics({"a": 2.0}, 2)
    again.close()
    assert again.run_id == first.run_id
    assert _points(stores[URI], first.run_id) == [("a", 1), ("a", 2)]
    back = upload(Spool.for_stage(run_dir, "train"), OTHER)  # the copy gets only what it lacks
    assert not back["created"] and back["run_id"] == copy["run_id"]
    assert _points(stores[OTHER], copy["run_id"]) == [("a", 1), ("a", 2)]


def test_a_store_whose_run_is_gone_gets_a_new_one_with_everything(tmp_path, stores):
    run_dir = tmp_path / "run"
    first = train_logger(run_dir)
    first.log_metrics({"a": 1.0}, 1)
    first.close()
    upload(Spool.for_stage(run_dir, "train"), OTHER)
    del stores[URI].runs[first.run_id]  # the first store lost it (a fresh server)
    stores[URI].metrics.clear()
    again = train_logger(run_dir, resume=True)
    again.close()
    assert _points(stores[URI], again.run_id) == [("a", 1)]  # a new run, sent the whole journal
