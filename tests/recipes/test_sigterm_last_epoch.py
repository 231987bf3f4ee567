"""A SIGTERM during the last epoch's last step or its validation stops the run after that epoch's checkpoint, before
the finish (best checkpoint reload, val and test evaluation, export, registration), for each recipe's `train`
(both go through `recipes.epochs.train_epochs`). It used to be kept and forgotten: `GracefulStop` only asks at the
steps and epoch ends before the last, so the run went on into the finish as if nothing had come, and the
scheduler's SIGKILL (30 s after its SIGTERM under Slurm) cut the finish anywhere: no KILLED status (the MLflow run
stayed RUNNING), no result. The resume runs the finish from the last checkpoint."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.signals import GracefulStop, Terminated
from mmlnb_dist.recipes.clip import export as clip_finish
from mmlnb_dist.recipes.clip.recipe import ClipRecipe
from mmlnb_dist.recipes.fusion import finish as fusion_finish
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

RECIPES = {"fusion": (FusionRecipe, fusion_finish), "clip": (ClipRecipe, clip_finish)}


class Run:
    """What a recipe's `train` reads of its recipe; a SIGTERM comes during epoch `signalled` (None: never)."""

    def __init__(self, epochs: int, signalled=None, start_epoch: int = 0):
        self.cfg = SimpleNamespace(train=SimpleNamespace(epochs=epochs))
        self.env, self.stop, self.start_epoch, self.engine = DistEnv(), GracefulStop(), start_epoch, object()
        self.signalled, self.trained = signalled, []

    def _train_and_evaluate(self, epoch, last):
        self.trained.append(epoch)
        if epoch == self.signalled:
            self.stop.requested = True  # as `GracefulStop._ask` records a SIGTERM


@pytest.fixture(params=sorted(RECIPES))
def recipe(request, monkeypatch):
    """(the recipe's `train`, the finishes it ran)"""
    recipe_class, finish_module = RECIPES[request.param]
    calls = []
    monkeypatch.setattr(finish_module, "finish", lambda recipe: calls.append(recipe) or {"finished": True})
    return recipe_class.train, calls


def test_a_sigterm_in_the_last_epoch_stops_before_the_finish(recipe):
    train, finished = recipe
    run = Run(epochs=3, signalled=2)
    with pytest.raises(Terminated, match="before the finish"):
        train(run)
    assert run.trained == [0, 1, 2] and finished == []


def test_without_a_sigterm_the_run_finishes(recipe):
    train, finished = recipe
    run = Run(epochs=3)
    assert train(run) == {"finished": True} and run.trained == [0, 1, 2] and len(finished) == 1


def test_a_resume_after_the_stop_runs_the_finish(recipe):
    train, finished = recipe
    run = Run(epochs=3, start_epoch=3)
    assert train(run) == {"finished": True} and run.trained == [] and len(finished) == 1
