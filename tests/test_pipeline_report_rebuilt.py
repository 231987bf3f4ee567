"""A rerun after changing one override: the stages it reaches run again, the others are skipped. The report's stage
table said "ran" alike for a first build and for a rebuild, so a user could not tell from it why a stage that had
finished ran again; it now says why (its inputs or settings changed, its output was deleted) beside the wall time,
and says nothing of the kind for a first run or a resumed one."""
from __future__ import annotations

import pytest

from support.report import stage_statuses

from mmlnb_dist.pipeline.report import stage_rows
from mmlnb_dist.pipeline.stages import run_stage


def _stage(out, fp, fail=False):
    def work(resume):
        out.mkdir(parents=True, exist_ok=True)
        (out / "x.txt").write_text(fp)
        if fail:
            raise RuntimeError("stopped")
        return {"built": fp}

    return run_stage("train", out, fp, work)


def _row(result):
    return stage_rows([result])[2]


def test_the_report_says_why_a_stage_that_ran_before_ran_again(tmp_path):
    out = tmp_path / "train"
    first = _stage(out, "a")
    assert "rebuilt" not in _row(first) and stage_statuses(_row(first)) == {"train": "ran"}
    assert _stage(out, "a").status == "skipped"
    changed = _stage(out, "b")
    assert "(rebuilt: its inputs or settings changed)" in _row(changed), _row(changed)
    assert stage_statuses(_row(changed)) == {"train": "ran"}  # the status column stays what it was
    (out / "x.txt").unlink()
    out.rmdir()
    gone = _stage(out, "b")
    assert "(rebuilt: its output was deleted)" in _row(gone), _row(gone)


def test_a_resumed_stage_is_not_called_rebuilt(tmp_path):
    out = tmp_path / "train"
    with pytest.raises(RuntimeError):
        _stage(out, "a", fail=True)
    resumed = _stage(out, "a")
    assert resumed.status == "ran" and resumed.rebuilt is None and "rebuilt" not in _row(resumed), _row(resumed)


def test_a_stage_stopped_before_making_its_output_is_rebuilt_for_its_new_settings_only(tmp_path):
    """A stage that stopped before its output folder existed (a bad input) and runs again with the same settings
    was not deleted by anyone; with other settings (the fixed input), that is why it runs."""
    out = tmp_path / "shards"

    def refuse(resume):
        raise RuntimeError("bad input")

    with pytest.raises(RuntimeError):
        run_stage("shards", out, "a", refuse)
    assert not out.exists()
    fixed = _stage(out, "b")
    assert "(rebuilt: its inputs or settings changed)" in _row(fixed), _row(fixed)
    with pytest.raises(RuntimeError):
        run_stage("shards", tmp_path / "other", "a", refuse)
    again = _stage(tmp_path / "other", "a")
    assert again.rebuilt is None and "rebuilt" not in _row(again), _row(again)


def test_the_log_does_not_call_an_output_never_made_gone(tmp_path):
    """The log of a stage that stopped before making its output said "<out> is gone (its record says running):
    running it afresh", as if someone had deleted it; a deleted output is still called gone."""
    said = []
    out = tmp_path / "shards"

    def refuse(resume):
        raise RuntimeError("bad input")

    with pytest.raises(RuntimeError):
        run_stage("shards", out, "a", refuse, say=said.append)
    said.clear()
    run_stage("shards", out, "a", lambda resume: out.mkdir() or {}, say=said.append)
    assert not any("is gone" in line for line in said) and any("is not there" in line for line in said), said
    train = tmp_path / "train"
    run_stage("train", train, "a", lambda resume: train.mkdir() or {}, say=said.append)
    train.rmdir()  # deleted by the user to have it rebuilt
    said.clear()
    run_stage("train", train, "a", lambda resume: train.mkdir() or {}, say=said.append)
    assert any("is gone (its record says done)" in line for line in said), said
