"""`tracking sync --uri` naming the run's own server as a browser shows it (`http://host:5000/`, a trailing
slash) is the same server: it was taken for another store, the journal's run was found there by its tag and the
whole journal sent again, every metric point logged twice into the run."""
from __future__ import annotations

from support.fake_mlflow import URI, install, train_logger

from mmlnb_dist.core.tracking.journal import sync_run_dir


def test_sync_to_the_runs_own_server_with_a_trailing_slash_sends_nothing_again(tmp_path, monkeypatch):
    servers = install(monkeypatch)
    servers[URI + "/"] = servers[URI]  # one server, two spellings
    logger = train_logger(tmp_path / "a")
    logger.log_metrics({"train/loss": 1.0}, step=1)
    logger.close()
    sent = list(servers[URI].metrics)
    [result] = sync_run_dir(tmp_path / "a", uri=URI + "/")
    assert "error" not in result and result["sent"] == 0 and result["run_id"] == logger.run_id
    assert servers[URI].metrics == sent and len(servers[URI].runs) == 1
