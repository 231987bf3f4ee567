"""Mutation audit of the curriculum (SPEC §3: lambda(e), staged freezing) and of the `fusion:` config's bounds:
exact lambda values of the smooth schedules against their formulas, the disabled curriculum's fused-only loss,
the checkpointed curriculum state, and configs that would train something other than the method refused when
loaded."""
from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from mmlnb_dist.recipes.fusion.config import CurriculumConfig, FusionConfig, FusionModelConfig
from mmlnb_dist.recipes.fusion.curriculum import (CurriculumState, curriculum_lambda, curriculum_loss,
                                                  phase_index)


@pytest.mark.parametrize("schedule", ["step", "linear", "cosine", "constant"])
def test_a_disabled_curriculum_trains_on_the_fused_loss_alone_whatever_the_schedule_says(schedule):
    """`enabled: false` is the paper's "no curriculum" ablation: lambda = 1 at every epoch (fused CE only), not
    the schedule's `end` (0.8 here) nor its `start`."""
    cfg = CurriculumConfig(enabled=False, schedule=schedule, start=0.2, end=0.8, ramp_start=2, ramp_end=6)
    assert [curriculum_lambda(cfg, e) for e in (0, 3, 6, 50)] == [1.0, 1.0, 1.0, 1.0]


def test_linear_schedule_values_are_the_straight_line_from_start_at_ramp_start_to_end_at_ramp_end():
    cfg = CurriculumConfig(schedule="linear", start=0.2, end=1.0, ramp_start=4, ramp_end=8)
    got = [curriculum_lambda(cfg, e) for e in range(10)]
    assert got == pytest.approx([0.2] * 5 + [0.4, 0.6, 0.8, 1.0, 1.0])


def test_cosine_schedule_values_follow_the_half_cosine_ramp():
    cfg = CurriculumConfig(schedule="cosine", start=0.2, end=1.0, ramp_start=4, ramp_end=8)
    want = [0.2 + 0.8 * 0.5 * (1 - math.cos(math.pi * (e - 4) / 4)) for e in range(4, 8)]
    assert [curriculum_lambda(cfg, e) for e in range(4, 8)] == pytest.approx(want)
    assert curriculum_lambda(cfg, 5) == pytest.approx(0.2 + 0.8 * (1 - math.sqrt(0.5)) / 2)  # slow start
    assert curriculum_lambda(cfg, 5) < 0.4  # below the linear ramp's 0.4 at a quarter of the way


def test_step_schedule_with_a_single_step_jumps_from_start_to_end():
    """A ramp of one step (or an empty ramp, ramp_start == ramp_end) goes straight from `start` to `end`."""
    one = CurriculumConfig(schedule="step", start=0.3, end=1.0, ramp_start=5, ramp_end=8, step_every=10)
    assert [curriculum_lambda(one, e) for e in (4, 5, 7, 8)] == pytest.approx([0.3, 0.3, 0.3, 1.0])
    empty = CurriculumConfig(schedule="step", start=0.3, end=1.0, ramp_start=5, ramp_end=5)
    assert [curriculum_lambda(empty, e) for e in (4, 5, 6)] == pytest.approx([0.3, 1.0, 1.0])


def test_phase_index_holds_each_phase_from_its_own_start_epoch():
    cfg = CurriculumConfig(phases=[{"start_epoch": 0}, {"start_epoch": 2}, {"start_epoch": 3}])
    assert [phase_index(cfg, e) for e in range(5)] == [0, 0, 1, 2, 2]


def test_curriculum_loss_at_lambda_zero_is_the_image_head_alone():
    torch.manual_seed(1)
    fused, image, y = torch.randn(6, 3), torch.randn(6, 3), torch.randint(0, 3, (6,))
    ce = torch.nn.functional.cross_entropy
    assert float(curriculum_loss(fused, image, y, 0.0)) == pytest.approx(float(ce(image, y)))
    assert float(curriculum_loss(fused, image, y, 1.0)) == pytest.approx(float(ce(fused, y)))


def test_curriculum_state_round_trips_through_a_checkpoint_dict():
    state = CurriculumState(epoch=7, phase=2)
    again = CurriculumState()
    again.load_state_dict(state.state_dict())
    assert (again.epoch, again.phase) == (7, 2)


@pytest.mark.parametrize("kwargs, match", [
    ({"phases": [{"start_epoch": 0}, {"start_epoch": 5}, {"start_epoch": 5}]}, "increase strictly"),
    ({"phases": [{"start_epoch": 0}, {"start_epoch": 6}, {"start_epoch": 4}]}, "increase strictly"),
    ({"phases": [{"start_epoch": 1}, {"start_epoch": 6}]}, "start_epoch 0"),
    ({"phases": []}, "start_epoch 0"),
    ({"ramp_start": 10, "ramp_end": 9}, "ramp_end"),
    ({"step_every": 0}, "step_every"),
    ({"start": 1.2}, "start"),
    ({"end": -0.1}, "end"),
])
def test_curriculum_configs_that_cannot_be_followed_are_refused(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        CurriculumConfig(**kwargs)


def test_an_empty_ramp_is_accepted():
    assert CurriculumConfig(ramp_start=10, ramp_end=10).ramp_end == 10


@pytest.mark.parametrize("kwargs", [{"fixed_alpha": 1.5}, {"fixed_alpha": -0.1}, {"dropout": 1.0},
                                    {"confidence_hidden": 0}, {"mode": "late"}])
def test_model_settings_out_of_range_are_refused(kwargs):
    with pytest.raises(ValidationError):
        FusionModelConfig(**kwargs)


def test_model_defaults_are_the_papers():
    """SPEC §3: PRMF fusion; the authors' confidence MLP has 256 hidden units."""
    cfg = FusionConfig()
    assert cfg.model.mode == "prmf" and cfg.model.confidence_hidden == 256
    assert cfg.curriculum.enabled and cfg.curriculum.schedule == "step"
    assert (cfg.curriculum.start, cfg.curriculum.end, cfg.curriculum.ramp_start, cfg.curriculum.ramp_end,
            cfg.curriculum.step_every) == (0.3, 1.0, 50, 100, 10)
