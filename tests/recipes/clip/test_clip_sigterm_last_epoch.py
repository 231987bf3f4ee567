"""CLIP as fusion (tests/recipes/fusion/test_sigterm_last_epoch.py): a SIGTERM during the last epoch's last step or
its validation stops the run after that epoch's checkpoint, before the finish (best reload, val/test evaluation,
export, registration). It was forgotten: `GracefulStop` only asks at the steps and epoch ends before the last, so
the run went into the finish and the scheduler's SIGKILL cut it anywhere. The resume runs the finish."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.signals import GracefulStop, Terminated
from mmlnb_dist.recipes.clip import export as export_module
from mmlnb_dist.recipes.clip.recipe import ClipRecipe


class Run:
    """What `ClipRecipe.train` reads of its recipe; a SIGTERM comes during epoch `signalled` (None: never)."""

    def __init__(self, epochs: int, signalled=None, start_epoch: int = 0):
        self.cfg = SimpleNamespace(train=SimpleNamespace(epochs=epochs))
        self.env, self.stop, self.start_epoch, self.engine = DistEnv(), GracefulStop(), start_epoch, object()
        self.signalled, self.trained = signalled, []

    def _train_and_evaluate(self, epoch, last):
        self.trained.append(epoch)
        if epoch == self.signalled:
            self.stop.requested = True  # as `GracefulStop._ask` records a SIGTERM


@pytest.fixture
def finished(monkeypatch):
    calls = []
    monkeypatch.setattr(export_module, "finish", lambda recipe: calls.append(recipe) or {"finished": True})
    return calls


def test_a_sigterm_in_the_last_epoch_stops_before_the_finish(finished):
    run = Run(epochs=3, signalled=2)
    with pytest.raises(Terminated, match="before the finish"):
        ClipRecipe.train(run)
    assert run.trained == [0, 1, 2] and finished == []


def test_without_a_sigterm_the_run_finishes(finished):
    run = Run(epochs=3)
    assert ClipRecipe.train(run) == {"finished": True} and run.trained == [0, 1, 2] and len(finished) == 1


def test_a_resume_after_the_stop_runs_the_finish(finished):
    run = Run(epochs=3, start_epoch=3)
    assert ClipRecipe.train(run) == {"finished": True} and run.trained == [] and len(finished) == 1
