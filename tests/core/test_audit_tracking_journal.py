"""Mutation-audit guards of the MLflow journal's replay (a torn last line, the acknowledged offset, a killed run's end
time, archived journals, syncing to another store) and of the lineage the logger gives its run. An in-memory
stand-in for `MlflowClient` (`support.fake_mlflow`) keeps them fast (no store, no server);
`tests/core/test_audit_tracking.py` holds the first round of these guards."""
from __future__ import annotations

import json

import mlflow
import pytest

from support.fake_mlflow import URI, FakeStore, install

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.runlock import FolderLock
from mmlnb_dist.core.sections import RunConfig, TrackingConfig
from mmlnb_dist.core.tracking import build_logger, journal, mlflow_logger, runs
from mmlnb_dist.core.tracking.folder_import import FolderImportError, import_run_folder
from mmlnb_dist.core.tracking.journal import Spool, sync_run_dir, upload
from mmlnb_dist.core.tracking.lineage import record_datasets

OTHER = "http://other.invalid:5000"


@pytest.fixture
def stores(monkeypatch):
    """One fake store per tracking URI (`stores[URI]`); every server is up until its store's `down` is set."""
    return install(monkeypatch)


def _logger(run_dir, resume=False, uri=URI, **tags):
    return mlflow_logger.MLflowLogger(TrackingConfig(), uri, run_dir.parent / "mlartifacts", "r-train", tags=tags,
                                      run_dir=run_dir, stage="train", resume=resume)


def _killed(lg):
    """What SIGKILL leaves: the journal as it is, its lock let go by the kernel."""
    lg.spool.unlock()


def _points(store, key="a"):
    return [(step, value) for _, k, step, value in store.metrics if k == key]


def test_a_last_line_missing_only_its_newline_is_not_replayed_and_shifts_no_offset(tmp_path, stores):
    """A kill can leave a last line that parses but lacks its newline. It is no event: the next append drops it,
    so counting it made the journal's event count one too high, every later `acked` pointed one event too far,
    and the first event the next outage kept (step 3 here) was never sent by `tracking sync`."""
    run_dir = tmp_path / "run"
    lg = _logger(run_dir)
    lg.log_metrics({"a": 1.0}, 1)
    _killed(lg)
    with open(lg.spool.path, "a") as fh:  # the kill landed between the record and its newline
        fh.write('{"op": "metrics", "step": 2, "metrics": {"a": 2.0}, "ts": 1}')
    again = _logger(run_dir, resume=True)
    assert again.spool.count == len(list(again.spool.events()))
    again.log_metrics({"a": 2.5}, 2)
    stores[URI].fail_on = "all"  # the server goes away again
    again.log_metrics({"a": 3.0}, 3)
    again.close()
    stores[URI].fail_on = None
    upload(Spool.for_stage(run_dir, "train"))
    assert _points(stores[URI]) == [(1, 1.0), (2, 2.5), (3, 3.0)]
    assert stores[URI].runs[lg.run_id].info.status == "FINISHED"


def test_a_killed_run_ends_at_its_last_journaled_event_not_at_the_sync(tmp_path, stores):
    """A run closed as KILLED by `tracking sync` ends when its process last wrote, not hours later when the sync
    ran: the KILLED close carries the last event's time and MLflow gets it as the run's end time."""
    run_dir = tmp_path / "run"
    lg = _logger(run_dir)
    lg.log_metrics({"a": 1.0}, 1)
    _killed(lg)
    last_ts = list(lg.spool.events())[-1]["ts"]
    spool = Spool.for_stage(run_dir, "train")
    spool.append({"op": "metrics", "step": 2, "metrics": {"a": 2.0}, "ts": last_ts + 5})
    upload(spool)
    run = stores[URI].runs[lg.run_id]
    assert run.info.status == "KILLED" and run.info.end_time == last_ts + 5


def test_an_archived_journal_still_names_its_own_run(tmp_path, stores):
    """A fresh run moves the old journal aside with its state: syncing the archived journal later (what its server
    missed) goes to the old MLflow run, not into a new run of its own."""
    run_dir = tmp_path / "run"
    old = _logger(run_dir)
    old.log_metrics({"a": 1.0}, 1)
    stores[URI].fail_on = "all"
    old.log_metrics({"a": 2.0}, 2)  # kept for a later sync
    old.close()
    stores[URI].fail_on = None
    fresh = _logger(run_dir)
    fresh.close()
    archived = run_dir / "tracking" / "train.1.jsonl"
    assert Spool(archived).state()["run_id"] == old.run_id
    result = upload(Spool(archived))
    assert result["run_id"] == old.run_id and not result["created"] and len(stores[URI].runs) == 2
    assert [(run, step) for run, key, step, _ in stores[URI].metrics] == [(old.run_id, 1), (old.run_id, 2)]


def test_sync_to_another_store_copies_a_run_the_first_store_has_whole(tmp_path, stores):
    """`tracking sync --uri OTHER` of a journal its own store acknowledged in full still makes the run at OTHER,
    with every event (nothing is pending for the first store, everything is for the new one)."""
    run_dir = tmp_path / "run"
    lg = _logger(run_dir)
    lg.log_metrics({"a": 1.0}, 1)
    lg.log_metrics({"a": 2.0}, 2)
    lg.close()
    assert Spool.for_stage(run_dir, "train").pending() == []
    result = upload(Spool.for_stage(run_dir, "train"), uri=OTHER)
    assert result["created"] and result["uri"] == OTHER
    assert _points(stores[OTHER]) == [(1, 1.0), (2, 2.0)]
    assert stores[OTHER].runs[result["run_id"]].info.status == "FINISHED"
    assert upload(Spool.for_stage(run_dir, "train"), uri=OTHER)["sent"] == 0  # recorded there now: nothing again


def test_one_unreachable_journal_does_not_stop_the_sync_of_the_others(tmp_path, stores):
    """`tracking sync RUNS_FOLDER`: a journal whose server is down gets an error entry; the next one is uploaded."""
    for name, uri in (("a", "http://down.invalid:5000"), ("b", URI)):
        spool = Spool.for_stage(tmp_path / name, "train")
        spool.append({"op": "start", "run_name": name, "experiment": "e", "artifact_root": str(tmp_path / "art")})
        spool.append({"op": "metrics", "step": 1, "metrics": {"a": 1.0}})
        spool.write_state(tracking_uri=uri)
    stores["http://down.invalid:5000"].down = True
    results = sync_run_dir(tmp_path)
    assert [("error" in r) for r in results] == [True, False]
    assert "not reachable" in results[0]["error"] and _points(stores[URI]) == [(1, 1.0)]


def test_a_run_made_from_a_journal_keeps_its_lineage_tags_and_experiment(tmp_path, stores):
    """A run first created by a sync (the server was down all along) carries the tags the logger was given (stage,
    run folder, parent run) and lands in the journal's experiment unless `--experiment` names another."""
    run_dir = tmp_path / "run"
    stores[URI].down = True
    lg = mlflow_logger.MLflowLogger(TrackingConfig(parent_run_id="parent1", experiment="exp-a"), URI,
                                    tmp_path / "mlartifacts", "r-train", tags={"stage": "train", "run_dir": "/r"},
                                    run_dir=run_dir, stage="train")
    lg.log_metrics({"a": 1.0}, 1)
    lg.close()
    assert lg.run_id is None and stores[URI].runs == {}
    stores[URI].down = False
    result = upload(Spool.for_stage(run_dir, "train"))
    run = stores[URI].runs[result["run_id"]]
    assert run.info.start_time == next(Spool.for_stage(run_dir, "train").events())["ts"]  # not the sync's time
    assert {k: run.data.tags.get(k) for k in ("stage", "run_dir", "mlflow.parentRunId")} == {
        "stage": "train", "run_dir": "/r", "mlflow.parentRunId": "parent1"}
    assert run.info.experiment_id == stores[URI].experiments["exp-a"] and run.info.run_name == "r-train"
    other = upload(Spool.for_stage(run_dir, "train"), uri=OTHER, experiment="exp-b")
    assert stores[OTHER].runs[other["run_id"]].info.experiment_id == stores[OTHER].experiments["exp-b"]


def test_a_resumed_journal_sends_the_step_of_each_metric(tmp_path, stores):
    """A backlog of several metric events goes as one request: each point keeps its own step and value."""
    run_dir = tmp_path / "run"
    stores[URI].down = True
    lg = _logger(run_dir)
    for step in (3, 1, 7):
        lg.log_metrics({"a": float(step), "b": -step}, step)
    _killed(lg)
    stores[URI].down = False
    again = _logger(run_dir, resume=True)
    again.close()
    assert _points(stores[URI]) == [(3, 3.0), (1, 1.0), (7, 7.0)]
    assert _points(stores[URI], "b") == [(3, -3.0), (1, -1.0), (7, -7.0)]


def test_a_killed_process_of_a_fresh_run_ends_its_old_run_killed(tmp_path, stores):
    """A fresh start over a folder whose last process was killed ends that process's MLflow run as KILLED (it
    would otherwise stay RUNNING for good), and its journal is kept."""
    run_dir = tmp_path / "run"
    old = _logger(run_dir)
    old.log_metrics({"a": 1.0}, 1)
    _killed(old)
    fresh = _logger(run_dir)
    assert stores[URI].runs[old.run_id].info.status == "KILLED"
    assert fresh.run_id != old.run_id and stores[URI].runs[fresh.run_id].info.status == "RUNNING"
    assert [e["op"] for e in Spool(run_dir / "tracking" / "train.1.jsonl").events()] == ["start", "metrics",
                                                                                         "close"]


def test_a_second_close_sends_nothing_and_the_lock_is_released(tmp_path, stores):
    """`close` twice (cleanup after a failure already closed the run) journals and sends one close, and a closed
    logger leaves the journal to `tracking sync` (its lock is let go)."""
    run_dir = tmp_path / "run"
    lg = _logger(run_dir)
    lg.close("FAILED")
    lg.close("FINISHED")
    assert stores[URI].runs[lg.run_id].info.status == "FAILED"
    spool = Spool.for_stage(run_dir, "train")
    assert [e["op"] for e in spool.events()] == ["start", "close"] and not spool.writer_alive()


def test_a_journal_line_that_is_not_json_is_skipped_not_fatal(tmp_path):
    """One unreadable line in the middle (a disk error) costs that event only; the ones after it are read."""
    spool = Spool(tmp_path / "j.jsonl")
    spool.append({"op": "start"})
    with open(spool.path, "a") as fh:
        fh.write("not json\n")
    spool.append({"op": "close", "status": "FINISHED"})
    assert [e["op"] for e in Spool(spool.path).events()] == ["start", "close"]


def test_the_journal_helpers_read_without_creating(tmp_path):
    """`recorded_run` of a folder that never tracked is {} and creates nothing there."""
    assert journal.recorded_run(tmp_path / "none") == {} and not (tmp_path / "none").exists()


def test_a_search_parent_run_gets_its_summary_at_the_trial_count_and_its_status(tmp_path, stores):
    """`ParentRun.open` logs every param (more than one request's 100); `finish` logs the summary metrics at the
    step it is given, removes a tag given as None, keeps it off a run that never had it, and ends the run with the
    status given; `child_with_tag` finds the trial whose tag matches, among the parent's children only."""
    params = {f"p{i}": i for i in range(150)}
    parent = runs.ParentRun.open(TrackingConfig(), URI, tmp_path, "search", params=params, tags={"stale": "x"})
    store = stores[URI]
    assert store.runs[parent.run_id].data.params == {k: str(v) for k, v in params.items()}
    exp = store.runs[parent.run_id].info.experiment_id
    for run_dir in ("/t1", "/t2"):
        store.create_run(exp, tags={"mlflow.parentRunId": parent.run_id, "run_dir": run_dir})
    store.create_run(exp, tags={"mlflow.parentRunId": "another", "run_dir": "/t3"})
    assert parent.child_with_tag("run_dir", "/t2") == "run3"
    assert parent.child_with_tag("run_dir", "/t3") is None
    parent.finish(metrics={"best": 0.5}, tags={"stale": None, "never": None, "kept": "1"}, step=7, status="KILLED")
    run = store.runs[parent.run_id]
    assert [(step, value) for _, key, step, value in store.metrics if key == "best"] == [(7, 0.5)]
    assert "stale" not in run.data.tags and "never" not in run.data.tags and run.data.tags["kept"] == "1"
    assert run.info.status == "KILLED"


def _untracked(tmp_path, metrics='{"step": 1, "a": 0.5}\n', **tracking):
    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    settings = {"uri": URI, **tracking}
    (run_dir / "config.yaml").write_text(f"run: {{name: r, resume: true}}\ntracking: {settings}\n")
    (run_dir / "metrics.jsonl").write_text(metrics)
    return run_dir


def test_an_imported_run_logs_its_config_but_not_how_its_process_started(tmp_path, stores):
    """`tracking import` logs the config as params without `run.resume` (a resume of the imported run would change
    it: a refused param), skips blank lines of `metrics.jsonl`, and records the run in the folder."""
    run_dir = _untracked(tmp_path, metrics='{"step": 1, "a": 0.5}\n\n{"step": 2, "a": 0.25}\n')
    result = import_run_folder(run_dir)
    params = stores[URI].runs[result["run_id"]].data.params
    assert params["run.name"] == "r" and "run.resume" not in params
    assert _points(stores[URI]) == [(1, 0.5), (2, 0.25)]
    assert journal.recorded_run(run_dir)["run_id"] == result["run_id"]


def test_an_import_honours_log_dataset_false(tmp_path, stores, monkeypatch):
    """A run configured with `tracking.log_dataset: false` is imported without dataset inputs, as it trained."""
    calls = []
    monkeypatch.setattr(FakeStore, "log_inputs", lambda self, run_id, datasets=None: calls.append(run_id))
    for name, log_dataset in (("off", False), ("on", True)):
        run_dir = _untracked(tmp_path / name, log_dataset=log_dataset)
        record_datasets(run_dir, "train", [{"name": "s", "digest": "d", "source": "/s", "profile": {},
                                            "context": "val"}])
        import_run_folder(run_dir)
    assert calls == ["run2"]


def test_a_folder_whose_journal_exists_or_whose_job_runs_is_not_imported(tmp_path, stores):
    """A folder with a journal but no run id yet (its server was never reached) is already tracked: `tracking
    sync` sends it. A folder a live job holds is refused too. Nothing is created at the server either way."""
    run_dir = _untracked(tmp_path)
    Spool.for_stage(run_dir, "train").append({"op": "start"})
    with pytest.raises(FolderImportError, match="already has an MLflow run"):
        import_run_folder(run_dir)
    busy = _untracked(tmp_path / "busy")
    lock = FolderLock(busy, "train").acquire()
    try:
        with pytest.raises(UserError, match="in use"):
            import_run_folder(busy)
    finally:
        lock.release()
    assert stores[URI].runs == {} and not (busy / "tracking").exists()


def test_a_relative_sqlite_store_given_to_import_is_recorded_absolute(tmp_path, stores, monkeypatch):
    """`tracking import --uri sqlite:///rel.db` records the absolute file, so a sync from another folder finds the
    same store."""
    monkeypatch.chdir(tmp_path)
    run_dir = _untracked(tmp_path)
    result = import_run_folder(run_dir, uri="sqlite:///rel.db")
    assert result["uri"] == f"sqlite:///{tmp_path.resolve() / 'rel.db'}"
    assert journal.recorded_run(run_dir)["tracking_uri"] == result["uri"]


def test_the_logger_records_lineage_whatever_its_backends(tmp_path, stores):
    """`build_logger`: the shard sets go to `datasets.json` even without mlflow; with mlflow the run gets the
    stage and run-folder tags, dataset inputs only with `log_dataset`, environment tags only with
    `log_environment`."""
    spec = {"name": "s", "digest": "d", "source": "/s", "profile": {}, "context": "val"}
    run = RunConfig(name="r", output_dir=tmp_path)
    lg = build_logger(TrackingConfig(backends=["stdout"]), run, 0, tmp_path / "plain", "train", datasets=[spec])
    lg.close()
    assert journal.recorded_run(tmp_path / "plain") == {}
    assert json.loads((tmp_path / "plain" / "datasets.json").read_text())["train"][0]["source"] == "/s"
    off = TrackingConfig(uri=URI, log_dataset=False, log_environment=False)
    lg = build_logger(off, run, 0, tmp_path / "quiet", "train", datasets=[spec], tags={"recipe": "x"})
    lg.close()
    tags = stores[URI].runs[lg.run_id].data.tags
    assert tags["stage"] == "train" and tags["run_dir"] == str((tmp_path / "quiet").resolve())
    assert tags["recipe"] == "x" and "python" not in tags
    ops = [e["op"] for e in Spool.for_stage(tmp_path / "quiet", "train").events()]
    assert "inputs" not in ops and ops[0] == "start"
    lg = build_logger(TrackingConfig(uri=URI, log_environment=True), run, 0, tmp_path / "full", "train",
                      datasets=[spec])
    lg.close()
    assert "python" in stores[URI].runs[lg.run_id].data.tags
    assert "inputs" in [e["op"] for e in Spool.for_stage(tmp_path / "full", "train").events()]


def test_a_fresh_journaled_run_never_continues_a_run_its_folder_recorded_without_a_journal(tmp_path, stores):
    """A folder whose last run was logged with `tracking.spool=false` keeps only its run record: a fresh run with
    the journal on starts a new MLflow run, not the recorded one."""
    run_dir = tmp_path / "run"
    old = mlflow_logger.MLflowLogger(TrackingConfig(spool=False), URI, tmp_path / "art", "r-train", run_dir=run_dir,
                                     stage="train")
    old.close()
    assert journal.recorded_run(run_dir)["run_id"] == old.run_id
    fresh = _logger(run_dir)
    assert fresh.run_id != old.run_id and journal.recorded_run(run_dir)["run_id"] == fresh.run_id


def test_without_a_journal_a_resume_continues_only_a_live_run_of_the_same_store(tmp_path, stores):
    """`tracking.spool=false`: a resume continues the recorded run; a run id recorded at another store, or a run
    deleted since, is not continued (a run of that id there is someone else's): a new run is made."""
    def logger(uri, resume):
        return mlflow_logger.MLflowLogger(TrackingConfig(spool=False), uri, tmp_path / "art", "r-train",
                                          run_dir=tmp_path / "run", stage="train", resume=resume)
    first = logger(URI, False)
    first.close()
    again = logger(URI, True)
    assert again.run_id == first.run_id and stores[URI].runs[first.run_id].data.tags["resume_count"] == "1"
    again.close()
    stores[OTHER] = FakeStore()
    stores[OTHER].create_run("1", tags={"owner": "someone else"})  # the same id, another store's run
    moved = logger(OTHER, True)
    assert "resume_count" not in stores[OTHER].runs[first.run_id].data.tags
    assert moved.run_id != first.run_id
    moved.close()
    stores[OTHER].runs[moved.run_id].info.lifecycle_stage = "deleted"
    after_delete = logger(OTHER, True)
    assert after_delete.run_id not in (first.run_id, moved.run_id)


def test_sync_into_a_new_sqlite_store_makes_it_and_reports_the_run_when_nothing_is_left(tmp_path, stores):
    """`tracking sync --uri sqlite:///NEW.db` of a journal recorded at another store is a copy, so NEW.db not
    existing yet is fine (only a recorded store that is gone is refused); a later sync with nothing to send still
    reports the run it belongs to."""
    run_dir = tmp_path / "run"
    lg = _logger(run_dir)
    lg.log_metrics({"a": 1.0}, 1)
    lg.close()
    new = f"sqlite:///{tmp_path / 'new.db'}"
    copied = upload(Spool.for_stage(run_dir, "train"), uri=new)
    assert copied["created"] and _points(stores[new]) == [(1, 1.0)]
    again = upload(Spool.for_stage(run_dir, "train"))
    assert again["sent"] == 0 and again["run_id"] == copied["run_id"] and again["uri"] == new


def test_params_and_tags_are_cut_to_what_mlflow_accepts(tmp_path, stores):
    """MLflow refuses a param value over 6000 characters (tags are kept to its 8000): a long value (a prompt, a class
    list) is cut, not left to fail the call and take the run offline."""
    lg = _logger(tmp_path / "run")
    lg.log_params({"prompt": "p" * 7000})
    lg.set_tags({"classes": "c" * 9000})
    assert lg.online
    data = stores[URI].runs[lg.run_id].data
    assert len(data.params["prompt"]) == 6000 and len(data.tags["classes"]) == 8000


def test_a_dataset_insert_race_is_retried_until_the_last_attempt(stores):
    """Two refused inserts in a row (three trials starting together) still link the dataset on the third try."""
    store = stores[URI]
    store.create_run("1")
    refusals = [RuntimeError("UNIQUE constraint failed: datasets.name")] * 2
    linked = []

    def log_inputs(run_id, datasets=None):
        if refusals:
            raise refusals.pop()
        linked.append(run_id)
    store.log_inputs = log_inputs
    spec = {"name": "s", "digest": "d", "source": "/s", "profile": {}, "context": "val"}
    journal.apply_event(store, "run1", {"op": "inputs", "datasets": [spec]})
    assert linked == ["run1"]


def test_a_torn_last_line_then_an_outage_leaves_one_point_per_step_in_a_sqlite_store(tmp_path, monkeypatch):
    """End to end on a real SQLite store: a kill that left a parseable last line without its newline, a resume,
    then the server lost mid-run; `tracking sync` completes the run with exactly one point per step."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    lg = _logger(run_dir, uri=uri)
    lg.log_metrics({"a": 1.0}, 1)
    _killed(lg)
    with open(lg.spool.path, "a") as fh:
        fh.write('{"op": "metrics", "step": 2, "metrics": {"a": 2.0}, "ts": 1}')
    again = _logger(run_dir, resume=True, uri=uri)
    again.log_metrics({"a": 2.5}, 2)

    def lost(*_, **__):
        raise ConnectionError("lost the server")
    with monkeypatch.context() as patch:
        patch.setattr(mlflow_logger, "apply_event", lost)
        again.log_metrics({"a": 3.0}, 3)
    again.close()
    assert again.online is False and again.run_id == lg.run_id
    upload(Spool.for_stage(run_dir, "train"))
    client = mlflow.MlflowClient(uri)
    assert sorted((m.step, m.value) for m in client.get_metric_history(lg.run_id, "a")) == [
        (1, 1.0), (2, 2.5), (3, 3.0)]
    assert client.get_run(lg.run_id).info.status == "FINISHED"
