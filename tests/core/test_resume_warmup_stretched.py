"""More epochs on resume under a constant learning-rate schedule with a warmup: the warmup is a share of the run's
optimizer steps (`lr_schedule.warmup_ratio`), so it is stretched to the new length too, and a resume inside the new
warmup trains at a lower rate than the killed run did (epochs 2 -> 8 at warmup_ratio 0.5, resumed after epoch 2:
the rate falls from lr to about lr / 2 and warms up again). It was said only for a decaying (cosine) schedule; a
constant one with a warmup changed the rates silently."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.config import save_config
from mmlnb_dist.core.recipe import check_resume_config
from mmlnb_dist.core.schedule import lr_factor
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe


def _config(tmp_path, *overrides):
    return load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=r", *overrides])


def test_the_stretched_warmup_changes_the_rate_of_the_resumed_steps():
    """What the warning is about: the same step trains at another rate once the length changes."""
    cfg = load_config("cpu-demo", ["train.lr_schedule.warmup_ratio=0.5"])
    steps_per_epoch = 10
    before = lr_factor(cfg.train.lr_schedule, 2 * steps_per_epoch)(2 * steps_per_epoch)
    after = lr_factor(cfg.train.lr_schedule, 8 * steps_per_epoch)(2 * steps_per_epoch)
    assert before == 1.0 and after == pytest.approx(21 / 40)


@pytest.mark.parametrize("warmup, warned", [(0.5, True), (0.0, False)])
def test_more_epochs_under_a_constant_schedule_with_a_warmup_are_warned_about(tmp_path, caplog, warmup, warned):
    schedule = ("train.lr_schedule.name=constant", f"train.lr_schedule.warmup_ratio={warmup}")
    started = _config(tmp_path, "train.epochs=2", *schedule)
    save_config(started, started.run.dir / "config.yaml")
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.core.recipe"):
        check_resume_config(_config(tmp_path, "train.epochs=8", "run.resume=true", *schedule), started.run.dir,
                            FusionRecipe, record=False)
    said = [r.getMessage() for r in caplog.records if "learning-rate schedule" in r.getMessage()]
    if not warned:
        assert said == []
        return
    assert len(said) == 1 and said[0].startswith("train.epochs changed under a constant learning-rate schedule with "
                                                 "a warmup (train.lr_schedule, warmup_ratio 0.5)"), said
    assert "warmup is stretched" in said[0] and "equals no uninterrupted run" in said[0], said
