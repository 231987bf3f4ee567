"""Mutation-audit gaps of core.schedule: the warmup length is `round(warmup_ratio x steps)` as docs/fusion.md says,
a cosine with a single step after its warmup (or a one-step run) does not divide by zero, and a schedule resumed
from a checkpoint (torch's state dicts, then DeepSpeed's own save and load) continues on the uninterrupted curve."""
from __future__ import annotations

import math

import pytest
import torch

from mmlnb_dist.core.schedule import build_schedule, lr_factor, planned_lrs, warmup_steps
from mmlnb_dist.core.sections import LRScheduleConfig


def _closed_form(schedule: LRScheduleConfig, total: int, lr: float):
    """The documented curve: (s + 1) / W during the warmup, then constant or a cosine to min_lr_ratio at the end."""
    warm = round(schedule.warmup_ratio * total)
    out = []
    for s in range(total):
        if s < warm:
            out.append(lr * (s + 1) / warm)
        elif schedule.name == "constant":
            out.append(lr)
        else:
            t, span, floor = s - warm, max(1, total - warm - 1), schedule.min_lr_ratio
            out.append(lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t / span))))
    return out


def test_warmup_length_is_rounded_not_truncated():
    """0.19 x 10 steps = 1.9: two warmup steps (docs/fusion.md: `round(warmup_ratio x steps)`), not one."""
    schedule = LRScheduleConfig(name="cosine", warmup_ratio=0.19, min_lr_ratio=0.1)
    assert warmup_steps(schedule, 10) == 2
    lrs = planned_lrs(schedule, 10, lr=1.0)
    assert lrs[:2] == pytest.approx([0.5, 1.0]) and lrs[-1] == pytest.approx(0.1)
    assert lrs == pytest.approx(_closed_form(schedule, 10, 1.0))


@pytest.mark.parametrize("schedule,total,expected", [
    (LRScheduleConfig(name="cosine"), 1, [1.0]),  # a one-step run trains at the peak
    (LRScheduleConfig(name="cosine", warmup_ratio=0.5, min_lr_ratio=0.2), 3, [0.5, 1.0, 1.0]),  # W = round(1.5)
    (LRScheduleConfig(name="cosine", warmup_ratio=0.5, min_lr_ratio=0.2), 4, [0.5, 1.0, 1.0, 0.2]),
])
def test_very_short_cosine_runs_do_not_divide_by_zero(schedule, total, expected):
    """One step or none after the warmup: the cosine has no length to fall over; it must not raise."""
    assert planned_lrs(schedule, total, lr=1.0) == pytest.approx(expected)
    assert lr_factor(schedule, total)(total + 5) == pytest.approx(0.2 if schedule.min_lr_ratio else 0.0)


def _train(opt, sched, steps):
    lrs = []
    for _ in range(steps):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return lrs


def _optimizer():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    return torch.optim.AdamW([{"name": "encoder", "params": [a]}, {"name": "heads", "params": [b], "lr": 0.05}],
                             lr=0.1)


def test_a_resumed_schedule_continues_on_the_uninterrupted_curve():
    """Stopped after 7 of 20 steps, its state (optimizer and schedule, as a checkpoint keeps them) loaded into a
    freshly built pair: the remaining 13 steps get exactly the learning rates of a run that never stopped."""
    schedule = LRScheduleConfig(name="cosine", warmup_ratio=0.2, min_lr_ratio=0.05)
    opt = _optimizer()
    whole = _train(opt, build_schedule(opt, schedule, 20), 20)
    assert [r[0] for r in whole] == pytest.approx(_closed_form(schedule, 20, 0.1))
    assert [r[1] for r in whole] == pytest.approx(_closed_form(schedule, 20, 0.05))

    first = _optimizer()
    sched = build_schedule(first, schedule, 20)
    head = _train(first, sched, 7)
    state = {"opt": first.state_dict(), "sched": sched.state_dict()}
    again = _optimizer()
    resumed = build_schedule(again, schedule, 20)
    again.load_state_dict(state["opt"])
    resumed.load_state_dict(state["sched"])
    tail = _train(again, resumed, 13)
    assert sum(head + tail, []) == pytest.approx(sum(whole, []))


def test_deepspeed_checkpoint_restores_the_schedule_step(tmp_path):
    """The real path: DeepSpeed saves the schedule with the engine and its load puts the run back at step 3 of 6, so
    the lr of the next optimizer steps is the planned one (not the warmup's first step again)."""
    from mmlnb_dist.core.distributed import DistEnv, init_engine_process_group, plan_batch
    from mmlnb_dist.core.engine import OptimizerSpec, build_engine
    from mmlnb_dist.core.sections import DistributedConfig

    dist_cfg, env = DistributedConfig(gradient_clipping=0.0), DistEnv()
    init_engine_process_group(env, dist_cfg)
    schedule = LRScheduleConfig(name="cosine", warmup_ratio=0.34, min_lr_ratio=0.1)
    planned = planned_lrs(schedule, 6, 1e-2)

    def built():
        torch.manual_seed(0)
        return build_engine(torch.nn.Linear(3, 1), None, optimizer=OptimizerSpec("adam", 1e-2), schedule=schedule,
                            total_steps=6, plan=plan_batch(2, 1, None), dist=dist_cfg, env=env)

    def step(b):
        b.engine.backward(b.engine(torch.randn(2, 3)).sum())
        b.engine.step()

    first = built()
    for _ in range(3):
        step(first)
    first.engine.save_checkpoint(str(tmp_path), tag="step-3")
    second = built()
    assert second.lr() == pytest.approx(planned[0])
    second.engine.load_checkpoint(str(tmp_path), tag="step-3")
    seen = []
    for _ in range(3):
        seen.append(second.lr())
        step(second)
    assert seen == pytest.approx(planned[3:])
