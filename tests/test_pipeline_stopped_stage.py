"""A stage that stops (an error, Ctrl-C, a kill) in a pipeline left to run for hours: the console and the
pipeline's log name the stage, how long it ran and what stopped it, and say that the same command continues it;
its record keeps the reason, and the rerun that resumes it says what stopped it last time."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.pipeline.stages import read_stage, run_stage


@pytest.mark.parametrize("stop, reason", [
    (RuntimeError("disk full while writing a shard"), "RuntimeError: disk full while writing a shard"),
    (UserError("describe.batch_size=0 must be positive"), "describe.batch_size=0 must be positive"),
    (KeyboardInterrupt(), "interrupted"),
])
def test_a_stopped_stage_is_named_with_its_reason_and_the_same_command_resumes_it(tmp_path, caplog, stop, reason):
    out = tmp_path / "train"
    said = []

    def stops(resume):
        out.mkdir(exist_ok=True)
        (out / "checkpoint-1").touch()  # what it kept before it stopped
        raise stop

    with caplog.at_level(logging.INFO, logger="mmlnb_dist"), pytest.raises(type(stop)):
        run_stage("train", out, "fp", stops, say=said.append)
    (line,) = [r for r in caplog.records if r.getMessage().startswith("train: stopped after ")]
    assert line.levelno == (logging.WARNING if isinstance(stop, KeyboardInterrupt) else logging.ERROR)
    assert f"({reason})" in line.getMessage() and str(out) in line.getMessage()
    assert "run the same command again and it resumes it" in line.getMessage()
    state = read_stage(out)
    assert state["status"] == "running" and state["stopped_by"] == reason  # open: the next run resumes it
    assert (out / "checkpoint-1").exists()  # what it kept is kept

    resumed = []
    result = run_stage("train", out, "fp", lambda resume: resumed.append(resume) or {}, say=said.append)
    assert resumed == [True] and result.status == "ran"
    assert f"train: resuming -> {out} (it stopped last time: {reason})" in said, said
    assert "stopped_by" not in read_stage(out) and read_stage(out)["status"] == "done"
