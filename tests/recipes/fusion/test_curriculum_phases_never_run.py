"""A curriculum whose later phases start at or after `train.epochs` (the paper's phases 0, 50, 100 in a 5-epoch
run) was told at info level, naming only the last phase's start epoch: a user running 60 epochs of phases
0, 50, 100 or 1 epoch of 0, 3, 6 could not tell which phases (and so which freezing settings) were skipped. The
note now names every phase that never runs, with its start epoch, and the run says it at warning level."""
from __future__ import annotations

from mmlnb_dist.recipes.fusion.config import CurriculumConfig, PhaseConfig
from mmlnb_dist.recipes.fusion.curriculum import phases_never_run


def _cur(*starts):
    return CurriculumConfig(phases=[PhaseConfig(start_epoch=s) for s in starts])


def test_every_phase_that_never_runs_is_named():
    message = phases_never_run(_cur(0, 3, 6), 1)
    assert "fusion.curriculum.phases[1] (start_epoch 3)" in message
    assert "fusion.curriculum.phases[2] (start_epoch 6)" in message
    assert "train.epochs=1" in message and "never run" in message


def test_only_the_phases_past_the_last_epoch_are_named():
    message = phases_never_run(_cur(0, 50, 100), 60)
    assert "phases[2] (start_epoch 100)" in message and "phases[1]" not in message


def test_no_note_when_every_phase_runs():
    assert phases_never_run(_cur(0, 3, 6), 7) is None
    assert phases_never_run(_cur(0), 1) is None
