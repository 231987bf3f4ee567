"""The run's lr figure shows every parameter group's rate: a VLM run with `vlm.merger_lr` (or CLIP's towers with
their own rate) plotted only the base rate, while `train/lr` logged the highest group's rate."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.core.schedule import build_schedule, planned_group_lrs, schedule_figure
from mmlnb_dist.core.sections import LRScheduleConfig


def _optimizer():
    w = [torch.nn.Parameter(torch.zeros(2)) for _ in range(3)]
    return torch.optim.AdamW([{"params": [w[0]], "name": "lora", "lr": 1e-3},
                              {"params": [w[1]], "name": "merger", "lr": 5e-3},
                              {"params": [w[2]], "name": "vision", "lr": 1e-3}], lr=1e-3)


def test_each_group_s_planned_rates_are_the_rates_the_optimizer_steps_with():
    """Reference: torch's optimizer and the run's own schedule, stepped through the whole run."""
    total = 12
    opt = _optimizer()
    sched = build_schedule(opt, LRScheduleConfig(name="cosine", warmup_ratio=0.25, min_lr_ratio=0.1), total)
    planned = planned_group_lrs(sched, total)
    seen = {i: [] for i in range(3)}
    for _ in range(total):
        for i, group in enumerate(opt.param_groups):
            seen[i].append(group["lr"])
        opt.step()
        sched.step()
    assert sorted(planned) == ["lora, vision", "merger"]  # equal peaks share one curve, named by both
    assert planned["merger"] == pytest.approx(seen[1], rel=1e-12)
    assert planned["lora, vision"] == pytest.approx(seen[0], rel=1e-12) and seen[0] == seen[2]


def test_the_figure_draws_one_labelled_curve_per_rate():
    opt = _optimizer()
    fig = schedule_figure(planned_group_lrs(build_schedule(opt, LRScheduleConfig(), 5), 5))
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["lora, vision (peak 0.001)", "merger (peak 0.005)"]
    assert list(ax.lines[1].get_ydata()) == pytest.approx([5e-3] * 5)
    assert ax.get_legend() is not None
    single = schedule_figure([1e-3, 2e-3]).axes[0]  # one curve, as before: no legend
    assert len(single.lines) == 1 and single.get_legend() is None
