"""Mutation-audit guards of the MLflow journal and logger: events recorded while the server is down are sent once,
in order, none twice; a resumed process continues its one MLflow run; a lost connection leaves the rest pending.
An in-memory stand-in for `MlflowClient` (`support.fake_mlflow`) keeps these fast (no store, no server)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from support.fake_mlflow import URI, install

from mmlnb_dist.core.sections import TrackingConfig
from mmlnb_dist.core.tracking import journal, mlflow_logger
from mmlnb_dist.core.tracking.journal import Spool, ensure_run, send_pending, upload
from mmlnb_dist.core.tracking.loggers import MultiLogger, NullLogger, StdoutLogger, epoch_summary

@pytest.fixture
def fake(monkeypatch):
    """The fake store every `MlflowClient(URI)` gives, its server up until `fake.down = True`."""
    return install(monkeypatch)[URI]


def _logger(tmp_path, resume=False):
    return mlflow_logger.MLflowLogger(TrackingConfig(), URI, tmp_path / "mlartifacts", "r-train",
                                      run_dir=tmp_path / "run", stage="train", resume=resume)


def _journal(tmp_path):
    return Spool.for_stage(tmp_path / "run", "train")


def _steps(client):
    return [(key, step, value) for _, key, step, value in client.metrics]


def test_metrics_of_an_outage_are_sent_once_in_order_and_a_second_sync_sends_nothing(tmp_path, fake):
    """Online calls are acknowledged as they go; what the outage kept is sent by `upload`, in journal order, and a
    second `upload` (or `tracking sync`) sends nothing again."""
    lg = _logger(tmp_path)
    lg.log_metrics({"loss": 1.0}, 1)
    assert _journal(tmp_path).pending() == []  # sent and acknowledged
    fake.fail_on = "metrics"  # the server goes away mid-run
    lg.log_metrics({"loss": 0.9}, 2)
    assert lg.online is False
    fake.fail_on = None
    for step in (3, 4):
        lg.log_metrics({"loss": 1.0 - step / 10}, step)
    lg.close()
    assert [step for _, step, _ in _steps(fake)] == [1]
    first = upload(_journal(tmp_path))
    assert first["sent"] == 4 and first["created"] is False  # metrics 2, 3, 4 and the close
    assert _steps(fake) == [("loss", 1, 1.0), ("loss", 2, 0.9), ("loss", 3, 0.7), ("loss", 4, 0.6)]
    assert fake.runs[lg.run_id].info.status == "FINISHED" and len(fake.runs) == 1
    assert upload(_journal(tmp_path))["sent"] == 0
    assert len(fake.metrics) == 4


def test_a_failure_halfway_leaves_that_event_and_the_rest_pending(tmp_path, fake):
    """`send_pending` acknowledges each accepted event only: a refused tag leaves it and the close pending, and the
    next try sends exactly those."""
    fake.down = True
    lg = _logger(tmp_path)
    lg.log_metrics({"a": 1.0}, 1)
    lg.set_tags({"t": "x"})
    lg.log_metrics({"a": 2.0}, 2)
    lg.close()
    spool = _journal(tmp_path)
    fake.down, fake.fail_on = False, "tags"
    run_id, created = ensure_run(fake, spool, URI)
    assert created is True
    with pytest.raises(ConnectionError):
        send_pending(fake, run_id, spool)
    assert [e["op"] for _, e in spool.pending()] == ["tags", "metrics", "close"]
    fake.fail_on = None
    assert send_pending(fake, run_id, spool) == 3
    assert _steps(fake) == [("a", 1, 1.0), ("a", 2, 2.0)] and spool.pending() == []


def test_pending_starts_right_after_the_acknowledged_prefix(tmp_path):
    """`acked` counts leading events: with 2 acknowledged, event index 2 is the first pending one."""
    spool = Spool(tmp_path / "j.jsonl")
    for n in range(4):
        spool.append({"op": "metrics", "step": n, "metrics": {"m": n}})
    spool.write_state(acked=2)
    assert [i for i, _ in spool.pending()] == [2, 3]


def test_an_event_with_more_metrics_than_one_request_takes_is_split(tmp_path, fake):
    """MLflow takes 1000 metrics a request: 1500 in one event go as requests of at most 1000, all of them sent."""
    spool = Spool(tmp_path / "j.jsonl")
    spool.append({"op": "metrics", "step": 0, "metrics": {f"m{i}": float(i) for i in range(1500)}})
    fake.create_run("1")
    send_pending(fake, "run1", spool)
    assert max(fake.batches) <= 1000 and len(fake.metrics) == 1500 and spool.pending() == []


def test_a_resumed_process_continues_its_one_run_and_counts_its_resumes(tmp_path, fake):
    """Each resume reopens the run recorded in the folder (no second MLflow run) and counts up `resume_count`."""
    lg = _logger(tmp_path)
    lg.log_metrics({"a": 1.0}, 1)  # then killed: no close
    lg.spool.unlock()
    for count in (1, 2):
        again = _logger(tmp_path, resume=True)
        assert again.run_id == lg.run_id and fake.runs[lg.run_id].info.status == "RUNNING"
        assert fake.runs[lg.run_id].data.tags["resume_count"] == str(count)
        again.close()
    assert len(fake.runs) == 1 and fake.runs[lg.run_id].info.status == "FINISHED"
    ops = [e["op"] for e in _journal(tmp_path).events()]
    assert ops == ["start", "metrics", "close", "resume", "close", "resume", "close"]
    assert [e["status"] for e in _journal(tmp_path).events() if e["op"] == "close"] == ["KILLED", "FINISHED",
                                                                                        "FINISHED"]


def test_a_resumed_segment_killed_silently_is_closed_as_killed(tmp_path):
    """A process that resumed and was then killed left a `resume` segment open: it is closed as KILLED."""
    spool = Spool(tmp_path / "j.jsonl")
    for event in ({"op": "start"}, {"op": "close", "status": "KILLED"}, {"op": "resume"},
                  {"op": "metrics", "step": 3, "metrics": {"a": 1.0}}):
        spool.append(event)
    assert spool.close_killed_segment() is True
    assert list(spool.events())[-1]["status"] == "KILLED"
    assert spool.close_killed_segment() is False  # closed now


def test_a_fresh_run_gets_a_new_mlflow_run_and_keeps_every_old_journal(tmp_path, fake):
    """A fresh (not resumed) run never continues the folder's old run; each old journal is kept (archived)."""
    ids = []
    for _ in range(3):
        lg = _logger(tmp_path)
        lg.log_metrics({"a": 1.0}, 1)
        lg.close()
        ids.append(lg.run_id)
    assert len(set(ids)) == 3
    folder = tmp_path / "run" / "tracking"
    assert sorted(p.name for p in folder.glob("train.*.jsonl")) == ["train.1.jsonl", "train.2.jsonl"]


def test_steps_the_killed_process_logged_after_the_checkpoint_are_not_logged_twice(tmp_path, fake):
    """After a resume from step 3, the metrics the killed process logged at steps 4-5 are kept and not sent
    again; step 3 itself (before the kill point) and new steps are logged."""
    lg = _logger(tmp_path)
    for step in range(1, 6):
        lg.log_metrics({"a": float(step)}, step)
    lg.spool.unlock()
    again = _logger(tmp_path, resume=True)
    again.resumed_at(3)
    for step in range(4, 8):
        again.log_metrics({"a": 10.0 + step}, step)
    again.log_metrics({"b": 1.0}, 4)  # a key the killed process never logged at that step
    assert [(s, v) for k, s, v in _steps(fake) if k == "a"] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0),
                                                                (6, 16.0), (7, 17.0)]
    assert ("b", 4, 1.0) in _steps(fake)


def test_a_changed_param_on_resume_becomes_a_tag_not_a_failure(tmp_path, fake):
    """MLflow refuses to change a param: the run keeps the old value and `param_changed.<key>` holds the new one;
    an unchanged param gets no tag."""
    lg = _logger(tmp_path)
    lg.log_params({"lr": "0.1", "bs": "8"})
    lg.spool.unlock()
    again = _logger(tmp_path, resume=True)
    again.log_params({"lr": "0.2", "bs": "8", "new": "1"})
    data = fake.runs[lg.run_id].data
    assert data.params == {"lr": "0.1", "bs": "8", "new": "1"} and again.online
    assert {k: v for k, v in data.tags.items() if k.startswith("param_changed.")} == {"param_changed.lr": "0.2"}


def test_a_line_a_kill_cut_short_is_dropped_before_the_next_append(tmp_path):
    """A half-written last line is removed, so the next event starts a line of its own and is read back."""
    spool = Spool(tmp_path / "j.jsonl")
    spool.append({"op": "start"})
    with open(spool.path, "a") as fh:
        fh.write('{"op": "metrics", "st')
    again = Spool(spool.path)
    again.append({"op": "close", "status": "KILLED"})
    assert [e["op"] for e in Spool(spool.path).events()] == ["start", "close"]


def test_a_run_recorded_at_another_store_is_made_anew_and_everything_resent(tmp_path, fake):
    """Uploading to another store than recorded makes a new run there and resends the whole journal (acked
    reset), not only what the old store missed."""
    spool = Spool(tmp_path / "j.jsonl")
    spool.append({"op": "start", "run_name": "r", "experiment": "e", "artifact_root": str(tmp_path / "a")})
    spool.append({"op": "metrics", "step": 1, "metrics": {"a": 1.0}})
    spool.write_state(tracking_uri="http://old:5000", run_id="gone", acked=2)
    run_id, created = ensure_run(fake, spool, URI)
    assert created and spool.acked == 0
    assert send_pending(fake, run_id, spool) == 2 and _steps(fake) == [("a", 1, 1.0)]


def test_a_run_created_but_never_recorded_is_adopted_not_duplicated(tmp_path, fake):
    """A run carrying the journal's start digest (its process died before recording the id) is this journal's:
    no second run is made."""
    spool = Spool(tmp_path / "j.jsonl")
    spool.append({"op": "start", "run_name": "r", "experiment": "e", "artifact_root": str(tmp_path / "a")})
    first, _ = ensure_run(fake, spool, URI)
    spool.state_path.unlink()  # the id never reached the record
    again, created = ensure_run(fake, spool, URI)
    assert again == first and created is False and len(fake.runs) == 1


def test_a_journal_a_live_process_writes_is_left_to_it(tmp_path, fake):
    """`tracking sync` skips a journal whose writer holds its lock, and closes nothing as KILLED."""
    fake.down = True
    lg = _logger(tmp_path)
    lg.log_metrics({"a": 1.0}, 1)
    fake.down = False
    result = upload(_journal(tmp_path))
    assert result["skipped"] and result["sent"] == 0 and fake.metrics == []
    assert all(e["op"] != "close" for e in _journal(tmp_path).events())


def test_sync_after_a_kill_sends_the_backlog_and_ends_the_run_killed(tmp_path, fake):
    """A journal whose writer died mid-run: sync closes its segment as KILLED and the run ends KILLED."""
    fake.down = True
    lg = _logger(tmp_path)
    lg.log_metrics({"a": 1.0}, 1)
    lg.spool.unlock()  # the kernel's doing when the process dies
    fake.down = False
    result = upload(_journal(tmp_path))
    assert result["sent"] == 3 and fake.runs[result["run_id"]].info.status == "KILLED"
    assert _steps(fake) == [("a", 1, 1.0)]


def test_run_resume_is_not_logged_as_a_param(tmp_path, monkeypatch, fake):
    """`run.resume` says how a process started: logged, it would change between segments (a refused param)."""
    from mmlnb_dist.core.sections import RunConfig
    from mmlnb_dist.core.tracking.loggers import build_logger

    cfg = SimpleNamespace(run=RunConfig(name="r", output_dir=tmp_path, resume=False))
    monkeypatch.setattr("mmlnb_dist.core.tracking.loggers.flatten", lambda c: {"run.resume": False, "lr": 0.1})
    monkeypatch.setattr("mmlnb_dist.core.tracking.loggers.save_config", lambda c, p: (p.write_text("x"), p)[1])
    lg = build_logger(TrackingConfig(uri=URI, log_environment=False), cfg.run, 0, tmp_path / "run", "train",
                      config=cfg)
    lg.close()
    assert fake.runs[lg.run_id].data.params == {"lr": "0.1"}


def test_stdout_records_after_the_resume_step_are_dropped_and_the_step_itself_kept(tmp_path):
    """`metrics.jsonl` reads as an uninterrupted run's: the resumed step's record stays, later ones go."""
    lg = StdoutLogger(tmp_path)
    for step in range(1, 6):
        lg.log_metrics({"a": float(step)}, step)
    lg.close()
    lg = StdoutLogger(tmp_path, resume=True)
    lg.resumed_at(3)
    lg.log_metrics({"a": 40.0}, 4)
    lg.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "a": 1.0}, {"step": 2, "a": 2.0}, {"step": 3, "a": 3.0}, {"step": 4, "a": 40.0}]


def test_epoch_summary_and_multilogger_online():
    """Epoch summaries move `train/` to `train_epoch/` (other keys untouched); a fan-out logger is online only
    while every backend is."""
    assert epoch_summary({"train/loss": 1.0, "val/acc": 0.5}) == {"train_epoch/loss": 1.0, "val/acc": 0.5}
    off = NullLogger()
    off.online = False
    assert MultiLogger([NullLogger(), off]).online is False
    assert MultiLogger([NullLogger(), NullLogger()]).online is True


def test_nonzero_ranks_get_a_logger_that_writes_nothing(tmp_path):
    """Ranks other than 0 log nothing: no folder, no journal."""
    from mmlnb_dist.core.sections import RunConfig
    from mmlnb_dist.core.tracking.loggers import build_logger

    lg = build_logger(TrackingConfig(uri=URI), RunConfig(name="r", output_dir=tmp_path), 1, tmp_path / "run",
                      "train")
    assert type(lg) is NullLogger and not (tmp_path / "run").exists()


def test_journals_are_found_below_a_runs_folder(tmp_path):
    """`tracking sync RUNS_FOLDER` finds every journal below it, archived ones too, and nothing else."""
    for rel in ("a/tracking/train.jsonl", "a/tracking/train.1.jsonl", "b/c/tracking/eval.jsonl",
                "a/tracking/train.json", "mlartifacts/x/tracking/train.jsonl"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    found = {str(p.relative_to(tmp_path)) for p in journal.find_journals(tmp_path)}
    assert found == {"a/tracking/train.jsonl", "a/tracking/train.1.jsonl", "b/c/tracking/eval.jsonl"}


def test_a_resumed_search_reopens_its_parent_run_and_a_gone_one_is_made_anew(tmp_path, fake):
    """`ParentRun.open(resume_id=...)` continues that run (RUNNING again) while it exists, else makes a new one."""
    from mmlnb_dist.core.tracking import runs

    first = runs.ParentRun.open(TrackingConfig(), URI, tmp_path, "search", params={"n": 2})
    fake.runs[first.run_id].info.status = "KILLED"
    again = runs.ParentRun.open(TrackingConfig(), URI, tmp_path, "search", resume_id=first.run_id)
    assert again.run_id == first.run_id and fake.runs[first.run_id].info.status == "RUNNING"
    other = runs.ParentRun.open(TrackingConfig(), URI, tmp_path, "search", resume_id="gone")
    assert other.run_id != first.run_id and len(fake.runs) == 2


def test_a_dataset_insert_race_is_retried_and_other_errors_are_not(fake):
    """Two runs inserting one dataset at once: the loser's refused insert is sent again; any other error raises."""
    fake.create_run("1")
    spec = {"name": "s", "digest": "d", "source": "/s", "profile": {}, "context": "val"}
    refusals = [RuntimeError("UNIQUE constraint failed: datasets.name")]

    def log_inputs(run_id, datasets=None):
        if refusals:
            raise refusals.pop()
        fake.calls.append(("inputs", run_id))
    fake.log_inputs = log_inputs
    journal.apply_event(fake, "run1", {"op": "inputs", "datasets": [spec]})
    assert fake.calls == [("inputs", "run1")]
    refusals.append(RuntimeError("permission denied"))
    with pytest.raises(RuntimeError, match="permission"):
        journal.apply_event(fake, "run1", {"op": "inputs", "datasets": [spec]})


@pytest.mark.parametrize("finished", [True, False])
def test_an_imported_folder_keeps_its_metrics_in_order_and_its_end(tmp_path, fake, finished):
    """`tracking import` sends every kept record at its step, in order, and ends the run FINISHED only when the
    run wrote its final metrics (else KILLED, for a resume to continue)."""
    from mmlnb_dist.core.tracking.folder_import import import_run_folder

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(f"run: {{name: r}}\ntracking: {{uri: '{URI}'}}\n")
    (run_dir / "metrics.jsonl").write_text('{"step": 2, "a": 0.5}\n{"step": 1, "a": 0.25}\n')
    if finished:
        (run_dir / "metrics.json").write_text("{}")
    result = import_run_folder(run_dir)
    assert _steps(fake) == [("a", 2, 0.5), ("a", 1, 0.25)]
    assert fake.runs[result["run_id"]].info.status == ("FINISHED" if finished else "KILLED")
