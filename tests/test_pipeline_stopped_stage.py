"""A stage that stops (an error, Ctrl-C, a kill) in a pipeline left to run for hours: the console and the
pipeline's log name the stage, how long it ran and what stopped it, and say that the same command continues it
(after a user error: once the error is fixed, as the same command would stop on it again);
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
    # the same command again would stop on the same user error: the line says to fix it first
    again = "fix what the error names, then run the command again: it resumes it" if isinstance(stop, UserError) \
        else "run the same command again and it resumes it"
    assert again in line.getMessage()
    state = read_stage(out)
    assert state["status"] == "running" and state["stopped_by"] == reason  # open: the next run resumes it
    assert (out / "checkpoint-1").exists()  # what it kept is kept

    resumed = []
    result = run_stage("train", out, "fp", lambda resume: resumed.append(resume) or {}, say=said.append)
    assert resumed == [True] and result.status == "ran"
    assert f"train: resuming -> {out} (it stopped last time: {reason})" in said, said
    assert "stopped_by" not in read_stage(out) and read_stage(out)["status"] == "done"


def test_a_stage_whose_training_diverged_does_not_say_the_same_command_resumes_it(tmp_path, caplog):
    """The same command would resume the run from its last checkpoint and diverge at the same step again: the log
    says to change the setting the error names (a changed setting rebuilds the stage)."""
    from mmlnb_dist.core.divergence import TrainingDiverged

    def diverges(resume):
        raise TrainingDiverged("training diverged at step 4 of epoch 0: the loss was nan. ... lower the learning "
                               "rate (train.lr=1000.0)")

    with caplog.at_level(logging.INFO, logger="mmlnb_dist"), pytest.raises(TrainingDiverged):
        run_stage("train", tmp_path / "train", "fp", diverges, say=lambda _: None)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train: stopped after ")]
    assert "run the same command again and it resumes it" not in line, line
    assert "would resume them and diverge at the same step again" in line, line
    assert "train.lr=1000.0" in line  # the error, with the setting to change


class Clock:
    """`time.time()` for the stages module: each call returns the next scripted instant."""

    def __init__(self, *instants: float):
        self.instants = list(instants)

    def time(self) -> float:
        return self.instants.pop(0)


def test_a_resumed_stage_reports_its_wall_time_over_every_run(tmp_path, monkeypatch):
    """A stage stopped after 30 s and resumed for 5 s took 35 s: its record and the report said 5 s (the last run
    alone), and a later rerun that skips it said "took 5.0 s when it ran"."""
    from mmlnb_dist.pipeline import stages
    from mmlnb_dist.pipeline.report import stage_rows

    out = tmp_path / "describe"

    def stops(resume):
        out.mkdir(exist_ok=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "time", Clock(100.0, 130.0))
    with pytest.raises(KeyboardInterrupt):
        run_stage("describe", out, "fp", stops, say=lambda _: None)
    monkeypatch.setattr(stages, "time", Clock(200.0, 205.0, 205.0))
    result = run_stage("describe", out, "fp", lambda resume: {}, say=lambda _: None)
    assert result.seconds == 5.0  # this run's part
    assert read_stage(out)["wall_seconds"] == 35.0 and read_stage(out)["runs"] == 2
    assert "| describe | ran | 5.0 s (resumed: 35.0 s over 2 runs) |" in "\n".join(stage_rows([result]))

    skipped = run_stage("describe", out, "fp", lambda resume: {}, say=lambda _: None)
    assert "| describe | skipped (up to date) | 0.0 s (took 35.0 s over 2 runs when it ran) |" in \
        "\n".join(stage_rows([skipped]))
