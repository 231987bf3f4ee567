"""`tracking sync` (and a resumed logger) looks the journal's recorded run up first. Any error doing so was taken for
"the run is gone": a server answering 503 for a moment got the warning that the run was not there any more and
the whole journal again, so every metric point already sent was logged a second time. Now only MLflow's "no such
run" (RESOURCE_DOES_NOT_EXIST) means gone; another error leaves the journal pending and is named."""
from __future__ import annotations

import logging

import pytest

from support.fake_mlflow import URI, install, train_logger

from mmlnb_dist.core.tracking.journal import Spool, sync_run_dir


@pytest.fixture
def stores(monkeypatch):
    return install(monkeypatch)


def _points(store):
    return sorted((step, value) for _, key, step, value in store.metrics if key == "train/loss")


def test_a_server_error_reading_the_run_resends_nothing_and_is_named(tmp_path, stores, caplog):
    run_dir = tmp_path / "runs" / "r"
    lg = train_logger(run_dir)
    lg.log_metrics({"train/loss": 1.0}, step=1)
    stores[URI].fail_on = "metrics"  # the server goes away: step 2 waits in the journal
    lg.log_metrics({"train/loss": 0.5}, step=2)
    lg.close()
    stores[URI].fail_on = "get_run"
    with caplog.at_level(logging.WARNING):
        [result] = sync_run_dir(run_dir)
    assert "TEMPORARILY_UNAVAILABLE" in result.get("error", "") or "503" in result.get("error", ""), result
    assert "not at" not in caplog.text, caplog.text  # no claim that the run is gone
    assert _points(stores[URI]) == [(1, 1.0)]
    assert Spool.for_stage(run_dir, "train").pending()
    stores[URI].fail_on = None
    [result] = sync_run_dir(run_dir)
    assert result["run_id"] == lg.run_id and not result["created"], result
    assert _points(stores[URI]) == [(1, 1.0), (2, 0.5)]  # each point once


def test_a_run_the_server_does_not_have_is_made_again(tmp_path, stores):
    run_dir = tmp_path / "runs" / "r"
    lg = train_logger(run_dir)
    lg.log_metrics({"train/loss": 1.0}, step=1)
    stores[URI].fail_on = "metrics"
    lg.log_metrics({"train/loss": 0.5}, step=2)
    lg.close()
    stores.pop(URI)  # a fresh server, without the run
    [result] = sync_run_dir(run_dir)
    assert result.get("created"), result
    assert _points(stores[URI]) == [(1, 1.0), (2, 0.5)]  # the whole journal, into the new run
