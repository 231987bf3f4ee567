"""MLflow refuses a `log_batch` of more than 100 tags or 1000 metrics. A `set_tags` or `log_metrics` call with more
went out as one request: refused while online (the run went offline), and refused again on every `tracking sync`,
so that event and every event journaled after it never reached the server. Now each goes in requests MLflow takes."""
from __future__ import annotations

import pytest

from support.fake_mlflow import URI, install, train_logger

from mmlnb_dist.core.tracking.journal import Spool, upload


@pytest.fixture
def stores(monkeypatch):
    return install(monkeypatch)


TAGS = {f"class.{i}": str(i) for i in range(250)}
METRICS = {f"val/auc.{i}": i / 2500 for i in range(2500)}


def test_many_tags_and_metrics_reach_a_live_server(tmp_path, stores):
    lg = train_logger(tmp_path / "runs" / "r")
    lg.set_tags(TAGS)
    lg.log_metrics(METRICS, step=3)
    lg.log_metrics({"train/loss": 0.5}, step=4)
    lg.close()
    run = stores[URI].runs[lg.run_id]
    assert {k: run.data.tags[k] for k in TAGS} == TAGS
    sent = {key: value for _, key, step, value in stores[URI].metrics if step == 3}
    assert sent == METRICS
    assert run.info.status == "FINISHED"  # the run stayed online to its end


def test_many_tags_in_a_journal_do_not_block_the_events_after_them(tmp_path, stores):
    run_dir = tmp_path / "runs" / "r"
    stores[URI].down = True
    lg = train_logger(run_dir)  # offline: everything waits in the journal
    lg.set_tags(TAGS)
    lg.log_metrics({"train/loss": 0.5}, step=1)
    lg.close()
    stores[URI].down = False
    result = upload(Spool.for_stage(run_dir, "train"), URI)
    run = stores[URI].runs[result["run_id"]]
    assert {k: run.data.tags[k] for k in TAGS} == TAGS
    assert (result["run_id"], "train/loss", 1, 0.5) in stores[URI].metrics
    assert run.info.status == "FINISHED"
    assert not Spool.for_stage(run_dir, "train").pending()
