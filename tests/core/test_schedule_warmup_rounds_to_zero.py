"""`lr_schedule.warmup_ratio` > 0 on a run too short for it: `round(ratio * total_steps)` is 0 warmup steps, and the
run trained at the full learning rate from its first step without a word, though the user asked for a warmup. The
schedule now logs one warning naming the ratio, the run's total steps, the 0 steps it came to and the ratio one
step would need (above 0.5 / total: Python's round takes exactly 0.5 to 0)."""
from __future__ import annotations

import logging

import pytest
import torch

from mmlnb_dist.core.schedule import build_schedule
from mmlnb_dist.core.sections import LRScheduleConfig

LOGGER = "mmlnb_dist.core.schedule"


def _build(ratio, total, caplog):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        sched = build_schedule(opt, LRScheduleConfig(warmup_ratio=ratio), total)
    return sched, [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def test_a_warmup_ratio_that_rounds_to_no_step_is_warned_about_once(caplog):
    sched, warned = _build(0.1, 4, caplog)  # 0.1 x 4 = 0.4 steps -> 0
    assert sched.factor(0) == 1.0  # (the behaviour is unchanged: no warmup step; it is now said)
    assert len(warned) == 1, caplog.text
    text = warned[0].getMessage()
    assert "warmup_ratio=0.1" in text and "4 optimizer steps" in text and "0 warmup steps" in text, text
    assert "above 0.125" in text, text  # 0.5 / 4: a ratio above it gives one step


def test_a_ratio_of_exactly_half_a_step_is_warned_about_too(caplog):
    """round(0.5) is 0 in Python (half to even): 0.125 x 4 steps gives no warmup step either."""
    sched, warned = _build(0.125, 4, caplog)
    assert sched.factor(0) == 1.0 and len(warned) == 1, caplog.text


@pytest.mark.parametrize("ratio, total", [(0.0, 4), (0.13, 4), (0.1, 200)], ids=["no-warmup", "one-step", "long"])
def test_no_warning_when_no_warmup_is_asked_or_some_step_is_given(caplog, ratio, total):
    _, warned = _build(ratio, total, caplog)
    assert warned == [], caplog.text
