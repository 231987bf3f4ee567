"""Mutation-audit guards of the MLflow logger's run choice and calls (`core/tracking/mlflow_logger.py`): which run
a resume continues at another store or without a journal, a fresh run beside a live one, where a figure lands,
what an empty or failing call leaves, and the system-metrics monitor's life. In-memory MLflow stores
(`support.fake_mlflow`) keep them fast."""
from __future__ import annotations

import logging

import mlflow
import pytest

from support.fake_mlflow import OTHER, URI, install, train_logger

from mmlnb_dist.core.tracking import journal, mlflow_logger
from mmlnb_dist.core.tracking.journal import Spool, upload

@pytest.fixture
def stores(monkeypatch):
    return install(monkeypatch)


def test_a_resume_at_another_store_never_continues_a_run_that_only_shares_the_id(tmp_path, stores):
    """A journal recorded at URI resumed at OTHER is a copy: OTHER gets a new run with the whole journal, never the
    run of OTHER that happens to carry the recorded id (someone else's)."""
    run_dir = tmp_path / "run"
    lg = train_logger(run_dir)
    lg.log_metrics({"a": 1.0}, 1)
    lg.spool.unlock()
    stores[OTHER].create_run("1", tags={"owner": "someone else"})  # the same id as lg's run at URI
    again = train_logger(run_dir, uri=OTHER, resume=True)
    assert again.run_id != lg.run_id
    assert "resume_count" not in stores[OTHER].runs[lg.run_id].data.tags
    assert [(k, step) for run, k, step, _ in stores[OTHER].metrics if run == again.run_id] == [("a", 1)]


def test_without_a_journal_a_fresh_run_is_new_and_each_resume_counts_on(tmp_path, stores):
    """`tracking.spool=false`: a fresh run never continues the folder's recorded run; each resume continues the
    run recorded last and counts `resume_count` up from the run's own tag."""
    first = train_logger(tmp_path / "run", spool=False)
    first.close()
    fresh = train_logger(tmp_path / "run", spool=False)
    fresh.close()
    assert fresh.run_id != first.run_id
    for count in ("1", "2"):
        again = train_logger(tmp_path / "run", resume=True, spool=False)
        again.close()
        assert again.run_id == fresh.run_id and stores[URI].runs[fresh.run_id].data.tags["resume_count"] == count


def test_a_run_without_a_journal_moves_the_folders_old_journal_aside(tmp_path, stores):
    """A journal an earlier process left (its server was down) is archived when the folder is next logged without
    a journal, so syncing it later makes its own run instead of filling the one the folder now records."""
    run_dir = tmp_path / "run"
    stores[URI].down = True
    old = train_logger(run_dir)
    old.log_metrics({"a": 1.0}, 1)
    old.close()
    stores[URI].down = False
    new = train_logger(run_dir, spool=False)
    new.close()
    archived = run_dir / "tracking" / "train.1.jsonl"
    assert archived.is_file() and not Spool.for_stage(run_dir, "train").path.exists()
    assert journal.recorded_run(run_dir)["run_id"] == new.run_id
    result = upload(Spool(archived))
    assert result["created"] and result["run_id"] != new.run_id
    assert [run for run, *_ in stores[URI].metrics] == [result["run_id"]]


def test_a_fresh_run_beside_a_live_writer_ends_none_of_its_run(tmp_path, stores):
    """Starting fresh over a folder another live process journals (the same folder twice) moves its journal aside
    but never ends that process's MLflow run as KILLED: only a dead writer's segment is closed."""
    run_dir = tmp_path / "run"
    live = train_logger(run_dir)
    live.log_metrics({"a": 1.0}, 1)
    fresh = train_logger(run_dir)
    assert fresh.run_id != live.run_id
    assert stores[URI].runs[live.run_id].info.status == "RUNNING"
    assert [e["op"] for e in Spool(run_dir / "tracking" / "train.1.jsonl").events()] == ["start", "metrics"]


class _Figure:
    def savefig(self, path, **_):
        path.write_bytes(b"png")


def test_a_figure_is_saved_in_the_run_folder_and_logged_under_its_subfolder(tmp_path, stores):
    """`log_figure(fig, "val/confusion.png")`: the file is `<run_dir>/figures/val/confusion.png`, logged under the
    artifact path `figures/val`."""
    lg = train_logger(tmp_path / "run")
    lg.log_figure(_Figure(), "val/confusion.png")
    assert (tmp_path / "run" / "figures" / "val" / "confusion.png").read_bytes() == b"png"
    assert stores[URI].artifacts == [(lg.run_id, "confusion.png", "figures/val")]


def test_no_dataset_inputs_journal_nothing(tmp_path, stores):
    """`log_datasets([])` (a stage without shard sets) sends and journals no `inputs` event."""
    lg = train_logger(tmp_path / "run")
    lg.log_datasets([])
    lg.close()
    assert [e["op"] for e in lg.spool.events()] == ["start", "close"]
    assert [kind for kind, _ in stores[URI].calls] == ["close"]


def test_a_store_mlflow_cannot_open_is_a_lost_server_that_names_its_error(tmp_path, monkeypatch, caplog):
    """A store `MlflowClient` refuses to open leaves training running, offline and journaling; the warning names
    the store and MLflow's own error, not a secondary one."""
    def refuse(*_, **__):
        raise OSError("disk quota exceeded")
    monkeypatch.setattr(mlflow, "MlflowClient", refuse)
    with caplog.at_level(logging.WARNING, logger=mlflow_logger.__name__):
        lg = train_logger(tmp_path / "run")
    lg.log_metrics({"a": 1.0}, 1)
    assert lg.online is False and lg.run_id is None
    assert [e["op"] for e in lg.spool.events()] == ["start", "metrics"]
    assert f"could not open the MLflow store {URI} (OSError: disk quota exceeded)" in caplog.text


class _Monitor:
    made = []

    def __init__(self, run_id, sampling_interval, tracking_uri):
        self.run_id, self.interval, self.finished = run_id, sampling_interval, 0
        _Monitor.made.append(self)

    def start(self):
        pass

    def finish(self):
        self.finished += 1


@pytest.mark.parametrize("on", [True, False])
def test_system_metrics_are_sampled_only_when_asked_and_stop_with_the_server(tmp_path, stores, monkeypatch, on):
    """`tracking.system_metrics` starts one monitor for the run (at its interval); a lost server stops it (it would
    keep failing), and close does not stop it twice. Off, no monitor runs."""
    from mlflow.system_metrics import system_metrics_monitor

    _Monitor.made = []
    monkeypatch.setattr(system_metrics_monitor, "SystemMetricsMonitor", _Monitor)
    lg = train_logger(tmp_path / "run", system_metrics=on, system_metrics_interval_s=2.5)
    if not on:
        assert _Monitor.made == []
        return
    [monitor] = _Monitor.made
    assert (monitor.run_id, monitor.interval, monitor.finished) == (lg.run_id, 2.5, 0)
    stores[URI].fail_on = "metrics"
    lg.log_metrics({"a": 1.0}, 1)
    assert monitor.finished == 1
    lg.close()
    assert monitor.finished == 1


def test_a_changed_param_without_a_journal_becomes_a_tag(tmp_path, stores):
    """The refused-param rule holds on the direct path too (`tracking.spool=false`, resumed)."""
    first = train_logger(tmp_path / "run", spool=False)
    first.log_params({"lr": "0.1"})
    first.close()
    again = train_logger(tmp_path / "run", resume=True, spool=False)
    again.log_params({"lr": "0.2"})
    data = stores[URI].runs[first.run_id].data
    assert again.online and data.params == {"lr": "0.1"} and data.tags["param_changed.lr"] == "0.2"

