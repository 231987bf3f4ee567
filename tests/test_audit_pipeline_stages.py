"""Mutation audit of the stage bookkeeping (`pipeline/stages.py`): what a stage's record says while it works and
when it is unreadable, which folders a stage takes over, and what the console says when a stage is rebuilt, kept
open or run for the first time. Stand-in work only: nothing is trained or built."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.pipeline import stages
from mmlnb_dist.pipeline.stages import KEEP_OPEN, read_stage, run_stage, stage_file


def test_an_unreadable_stage_record_reads_as_no_record(tmp_path):
    """A record cut short or edited by hand is taken as none (the stage then follows its rules for a folder without
    a record), not a JSON traceback on every rerun."""
    out = tmp_path / "shards"
    stage_file(out).write_text('{"fingerprint": "fp", "status": ')
    assert read_stage(out) == {}
    stage_file(out).write_text("\x00\x01 not json")
    assert read_stage(out) == {}


def test_while_a_stage_works_its_record_is_open_with_its_fingerprint_and_run(tmp_path):
    """The record says `running` with this fingerprint (and the run it is built for) before the work starts, so a
    process killed outright (no time to record why) is resumed by the same command, and a folder it half wrote is
    never taken for one the pipeline did not make."""
    out, seen = tmp_path / "train", []

    def work(resume):
        out.mkdir()
        seen.append(read_stage(out))
        return {}

    run_stage("train", out, "fp-1", work, say=lambda _: None, owner="run-a")
    assert seen == [{"fingerprint": "fp-1", "status": "running", "owner": "run-a"}]
    assert read_stage(out)["status"] == "done" and read_stage(out)["owner"] == "run-a"


def test_an_empty_folder_in_the_output_s_place_is_taken_over(tmp_path):
    """An empty folder holds nothing to lose: the stage builds there (a folder with files is refused,
    `test_a_folder_the_pipeline_did_not_make_is_never_deleted`)."""
    out = tmp_path / "shards"
    out.mkdir()
    result = run_stage("shards", out, "fp", lambda resume: out.mkdir() or {"built": True}, say=lambda _: None)
    assert result.info["built"] is True and read_stage(out)["status"] == "done"


def test_a_first_run_says_running_and_done_not_gone_or_rebuilding(tmp_path):
    out, said = tmp_path / "describe", []
    run_stage("describe", out, "fp", lambda resume: out.mkdir() or {}, say=said.append)
    assert said[0] == f"describe: running -> {out}", said
    assert said[-1].startswith("describe: done in ")
    assert not any("gone" in line or "rebuilding" in line for line in said), said


def test_a_rebuild_asked_for_by_the_recheck_names_its_reason_not_changed_settings(tmp_path):
    """An up-to-date stage whose result outside its folder is lost (a registration gone from the store) is rebuilt,
    and the console says why: the recheck's reason, not "inputs or settings changed"."""
    out, said = tmp_path / "register", []
    run_stage("register", out, "fp", lambda resume: out.mkdir() or {}, say=said.append)
    said.clear()
    again = run_stage("register", out, "fp", lambda resume: out.mkdir() or {"again": True}, say=said.append,
                      recheck=lambda record: "version 1 is gone from the MLflow store")
    assert again.info["again"] is True and not again.skipped
    assert "register: version 1 is gone from the MLflow store: rebuilding it" in said, said
    assert not any("inputs or settings changed" in line for line in said), said
    kept = run_stage("register", out, "fp", lambda resume: {}, say=said.append, recheck=lambda record: None)
    assert kept.skipped and kept.info["again"] is True


def test_a_stage_kept_open_says_it_is_not_finished_and_why(tmp_path):
    out, said = tmp_path / "register", []
    result = run_stage("register", out, "fp", lambda resume: out.mkdir() or {KEEP_OPEN: True, "reason": "server down"},
                       say=said.append)
    assert said[-1].startswith("register: not finished after ") and said[-1].endswith(
        "(the next run retries it): server down"), said
    assert not any(" done in " in line for line in said)
    assert result.info[KEEP_OPEN] is True and json.loads(stage_file(out).read_text())["status"] == "running"


def test_a_recheck_that_refuses_stops_the_stage_and_keeps_its_output(tmp_path):
    """A recheck's `UserError` (the lost result cannot be redone: the message says what to do) reaches the user, on
    rank 0 and on the rank that only hears rank 0's answer; the stage is neither skipped nor rebuilt."""
    out, calls = tmp_path / "register", []
    run_stage("register", out, "fp", lambda resume: out.mkdir() or {"n": 1}, say=lambda _: None)

    def refuses(record):
        raise UserError("the store no longer holds run r1: point tracking.uri back at it")

    with pytest.raises(UserError, match="point tracking.uri back at it"):
        run_stage("register", out, "fp", lambda resume: calls.append(resume) or {}, say=lambda _: None,
                  recheck=refuses)
    assert calls == [] and out.is_dir() and read_stage(out)["status"] == "done"
    sent = []  # rank 0's answer, as the other ranks receive it
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stages, "all_gather_object", lambda env, obj: sent.append(obj) or [obj, obj])
        with pytest.raises(UserError, match="no longer holds run r1"):
            stages._lost(refuses, {}, DistEnv(rank=0, world_size=2))
        mp.setattr(stages, "all_gather_object", lambda env, obj: [sent[0], obj])
        with pytest.raises(UserError, match="no longer holds run r1"):  # a refusal, not "checking ... failed"
            stages._lost(refuses, {}, DistEnv(rank=1, world_size=2))


def test_a_stopped_stage_rebuilt_for_a_changed_setting_does_not_say_it_resumes(tmp_path):
    """What stopped the last run is said when the run resumes it; a changed setting rebuilds the stage from scratch,
    and the console says so, without the old run's reason."""
    out, said = tmp_path / "train", []

    def stops(resume):
        out.mkdir(exist_ok=True)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        run_stage("train", out, "fp-a", stops, say=said.append)
    said.clear()
    run_stage("train", out, "fp-b", lambda resume: out.mkdir() or {}, say=said.append)
    assert f"train: running -> {out}" in said, said
    assert not any("stopped last time" in line for line in said), said


def test_a_stage_before_from_whose_output_was_deleted_is_refused_though_its_record_says_done(tmp_path):
    """--from takes the earlier stages as they are; an output deleted since (its record, beside it, says done) is
    not there to take: refused, naming the stage to start from."""
    import shutil

    from mmlnb_dist.pipeline.stages import PlannedStage, recorded

    out = tmp_path / "described"
    run_stage("describe", out, "fp", lambda resume: out.mkdir() or {}, say=lambda _: None)
    shutil.rmtree(out)
    assert read_stage(out)["status"] == "done"
    with pytest.raises(UserError, match=r"--from train: .*'describe' \(.*described\) is missing; .*--from describe"):
        recorded(PlannedStage("describe", out, "fp", lambda resume: {}), "train")


def test_a_planned_stage_s_recheck_is_asked_before_it_is_skipped(tmp_path):
    from mmlnb_dist.pipeline.stages import PlannedStage, run_planned

    out, asked = tmp_path / "register", []
    run_stage("register", out, "fp", lambda resume: out.mkdir() or {"v": 1}, say=lambda _: None)
    again = run_planned(PlannedStage("register", out, "fp", lambda resume: out.mkdir() or {"v": 2},
                                     recheck=lambda record: asked.append(record["v"]) or "version 1 is gone"))
    assert asked == [1] and not again.skipped and again.info["v"] == 2


def test_a_recheck_that_fails_on_rank_0_raises_its_own_error_there(tmp_path):
    """Rank 0 raises the recheck's own exception (its type and traceback, for the log); the other ranks, which only
    hear its text, raise a RuntimeError naming it (`test_a_recheck_failure_on_rank_zero_reaches_every_rank`)."""
    def broken(record):
        raise PermissionError("the MLflow store is read-only")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stages, "all_gather_object", lambda env, obj: [obj, obj])
        with pytest.raises(PermissionError, match="read-only"):
            stages._lost(broken, {}, DistEnv(rank=0, world_size=2))
