"""lambda(e) schedules and staged-freezing phases."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.recipes.fusion.config import CurriculumConfig, FusionModelConfig
from mmlnb_dist.recipes.fusion.curriculum import curriculum_lambda, curriculum_loss, phase_for_epoch, phase_index


def test_authors_step_schedule():
    cfg = CurriculumConfig()  # defaults are the authors': 0.3 -> 1.0, ramp 50..100, every 10 epochs
    got = [curriculum_lambda(cfg, e) for e in (0, 49, 50, 59, 60, 99, 100, 149)]
    assert got == pytest.approx([0.30, 0.30, 0.30, 0.30, 0.44, 0.86, 1.0, 1.0])
    assert [curriculum_lambda(cfg, e) for e in range(50, 100, 10)] == pytest.approx([0.30, 0.44, 0.58, 0.72, 0.86])


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_smooth_schedules_are_monotone_between_start_and_end(schedule):
    cfg = CurriculumConfig(schedule=schedule, ramp_start=10, ramp_end=20)
    values = [curriculum_lambda(cfg, e) for e in range(30)]
    assert values[0] == pytest.approx(0.3) and values[-1] == pytest.approx(1.0)
    assert values[15] == pytest.approx(0.65)
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_constant_and_disabled():
    assert curriculum_lambda(CurriculumConfig(schedule="constant", start=0.6), 120) == pytest.approx(0.6)
    assert curriculum_lambda(CurriculumConfig(enabled=False), 0) == 1.0


def test_phases_follow_start_epochs():
    cfg = CurriculumConfig()
    assert [phase_index(cfg, e) for e in (0, 49, 50, 99, 100, 149)] == [0, 0, 1, 1, 2, 2]
    assert phase_for_epoch(cfg, 10).train_text_encoder is False
    assert phase_for_epoch(cfg, 120).train_image_encoder is False


def test_default_phases_are_the_authors_staged_freezing():
    """The phase table a user gets without writing one, in the defaults and in the rtx4090 (paper) profile: SPEC §3,
    e < 50 text encoder frozen, 50 <= e < 100 both encoders train, e >= 100 both frozen. Without this pin a default
    that froze the text encoder in phase 1 (or trained it in phase 2) would silently train another method."""
    from mmlnb_dist.config import load_config

    want = [(0, True, False), (50, True, True), (100, False, False)]

    def table(cfg):
        return [(p.start_epoch, p.train_image_encoder, p.train_text_encoder) for p in cfg.phases]

    assert table(CurriculumConfig()) == want
    assert table(load_config("rtx4090").fusion.curriculum) == want


def test_bad_phases_rejected():
    with pytest.raises(ValueError):
        CurriculumConfig(phases=[{"start_epoch": 5}])
    with pytest.raises(ValueError):
        CurriculumConfig(ramp_start=10, ramp_end=5)


def test_curriculum_loss_mixes_the_two_heads():
    torch.manual_seed(0)
    fused, image, y = torch.randn(8, 3), torch.randn(8, 3), torch.randint(0, 3, (8,))
    ce = torch.nn.functional.cross_entropy
    assert curriculum_loss(fused, image, y, 0.3) == pytest.approx(float(0.3 * ce(fused, y) + 0.7 * ce(image, y)))
    assert curriculum_loss(fused, None, y, 0.3) == pytest.approx(float(ce(fused, y)))


def test_phase_changes_toggle_exactly_the_configured_parameters():
    from mmlnb_dist.recipes.fusion.model import build_classifier

    cfg = FusionModelConfig(image_encoder={"name": "tiny", "pretrained": False},
                            text_encoder={"name": "tiny-bert", "pooling": "mean", "max_length": 16})
    model = build_classifier(cfg, 3)
    heads = [p for n, p in model.named_parameters() if not n.startswith(("image_encoder.", "text_encoder."))]
    for phase in CurriculumConfig().phases:
        model.set_trainable(phase.train_image_encoder, phase.train_text_encoder)
        assert all(p.requires_grad == phase.train_image_encoder for p in model.image_encoder.parameters())
        assert all(p.requires_grad == phase.train_text_encoder for p in model.text_encoder.parameters())
        assert all(p.requires_grad for p in heads)
        model.train()
        assert model.image_encoder.training == phase.train_image_encoder  # frozen encoders stay in eval mode
        assert model.text_encoder.training == phase.train_text_encoder
