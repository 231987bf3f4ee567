"""A SIGTERM during the last epoch's last step or its validation stops the run after that epoch's checkpoint, before
the finish (best checkpoint reload, val and test evaluation, export, registration). It used to be kept and
forgotten: `GracefulStop` only asks at the steps and epoch ends before the last, so the run went on into the finish
as if nothing had come, and the scheduler's SIGKILL (30 s after its SIGTERM under Slurm) cut the finish anywhere:
no KILLED status (the MLflow run stayed RUNNING), no result. The resume runs the finish from the last checkpoint."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.signals import GracefulStop, Terminated
from mmlnb_dist.recipes.fusion import finish as finish_module
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe


class Run:
    """What `FusionRecipe.train` reads of its recipe; a SIGTERM comes during epoch `signalled` (None: never)."""

    def __init__(self, epochs: int, signalled=None, start_epoch: int = 0):
        self.cfg = SimpleNamespace(train=SimpleNamespace(epochs=epochs))
        self.env, self.stop, self.start_epoch = DistEnv(), GracefulStop(), start_epoch
        self.signalled, self.trained = signalled, []

    def _train_and_evaluate(self, epoch, last):
        self.trained.append(epoch)
        if epoch == self.signalled:
            self.stop.requested = True  # as `GracefulStop._ask` records a SIGTERM


@pytest.fixture
def finished(monkeypatch):
    calls = []
    monkeypatch.setattr(finish_module, "finish", lambda recipe: calls.append(recipe) or {"finished": True})
    return calls


def test_a_sigterm_in_the_last_epoch_stops_before_the_finish(finished):
    run = Run(epochs=3, signalled=2)
    with pytest.raises(Terminated, match="before the finish"):
        FusionRecipe.train(run)
    assert run.trained == [0, 1, 2] and finished == []


def test_without_a_sigterm_the_run_finishes(finished):
    run = Run(epochs=3)
    assert FusionRecipe.train(run) == {"finished": True} and run.trained == [0, 1, 2] and len(finished) == 1


def test_a_resume_after_the_stop_runs_the_finish(finished):
    run = Run(epochs=3, start_epoch=3)
    assert FusionRecipe.train(run) == {"finished": True} and run.trained == [] and len(finished) == 1
