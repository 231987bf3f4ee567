"""The run's curriculum_schedule.png draws the lambda of every epoch it trained. With `train.eval_every` > 1 the
history holds only the evaluated epochs, and the step plot held an evaluated epoch's lambda over the epochs
after it: a run that trained epoch 2 at lambda 0.65 showed 0.3 there, and no epoch 0 at all."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mmlnb_dist.recipes.fusion.config import CurriculumConfig
from mmlnb_dist.recipes.fusion.finish import curriculum_used
from mmlnb_dist.recipes.fusion.plots import curriculum_figure


def _recipe(history):
    # step schedule 0.3 -> 1.0 over epochs 1..3, one step per epoch: 0.3, 0.3, 0.65, 1.0
    cur = CurriculumConfig(schedule="step", start=0.3, end=1.0, ramp_start=1, ramp_end=3, step_every=1)
    return SimpleNamespace(history=history, cfg=SimpleNamespace(fusion=SimpleNamespace(
        curriculum=cur, model=SimpleNamespace(mode="prmf"))))


def test_epochs_without_an_evaluation_are_drawn_at_the_lambda_they_trained_with():
    recipe = _recipe([{"epoch": 1, "train/lambda": 0.3}, {"epoch": 3, "train/lambda": 1.0}])  # eval_every=2
    used = curriculum_used(recipe)
    assert used["epochs"] == [0, 1, 2, 3]
    assert used["lambdas"] == pytest.approx([0.3, 0.3, 0.65, 1.0])
    line = curriculum_figure(used["epochs"], used["lambdas"], used["phases"]).axes[0].lines[0]
    assert list(line.get_xdata()) == [0, 1, 2, 3, 4]  # epoch 3's lambda drawn over [3, 4), as far as the shading
    assert list(line.get_ydata()) == pytest.approx([0.3, 0.3, 0.65, 1.0, 1.0])


def test_an_evaluated_epoch_keeps_the_lambda_its_history_logged():
    recipe = _recipe([{"epoch": 0, "train/lambda": 0.3}, {"epoch": 1, "train/lambda": 0.3}])
    assert curriculum_used(recipe)["lambdas"] == [0.3, 0.3]
    assert curriculum_used(_recipe([]))["epochs"] == []


@pytest.mark.parametrize("mode, image, text", [("text_only", False, True), ("image_only", True, False),
                                               ("prmf", True, True)])
def test_the_phases_name_only_the_encoders_the_model_has(mode, image, text):
    """A text-only model's phase 0 was labelled 'trains: image+text' and its frozen phase 'trains: image'."""
    cur = CurriculumConfig(phases=[{"start_epoch": 0}, {"start_epoch": 1, "train_text_encoder": False}])
    recipe = SimpleNamespace(history=[{"epoch": 0, "train/lambda": 0.3}, {"epoch": 1, "train/lambda": 0.3}],
                             cfg=SimpleNamespace(fusion=SimpleNamespace(curriculum=cur,
                                                                        model=SimpleNamespace(mode=mode))))
    phases = curriculum_used(recipe)["phases"]
    assert [(p["train_image_encoder"], p["train_text_encoder"]) for p in phases] == [(image, text), (image, False)]
    labels = [t.get_text() for t in curriculum_figure([0, 1], [0.3, 0.3], phases).axes[0].texts]
    assert labels[1] == ("trains: image" if image else "trains: heads only")
