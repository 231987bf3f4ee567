"""The learning rate's one owner: the warmup + constant / cosine factor checked against torch's own schedulers,
frozen groups held at exactly 0, and DeepSpeed stepping the schedule once per optimizer step."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.core.schedule import GroupSchedule, build_schedule, lr_factor, planned_lrs, warmup_steps
from mmlnb_dist.core.sections import LRScheduleConfig


def _torch_reference(schedule: LRScheduleConfig, total: int, lr: float):
    """The same schedule built from torch.optim.lr_scheduler pieces; returns the lr of every step."""
    from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LinearLR, SequentialLR

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    warm = warmup_steps(schedule, total)
    if schedule.name == "cosine":
        after = CosineAnnealingLR(opt, T_max=total - warm - 1, eta_min=lr * schedule.min_lr_ratio)
    else:
        after = ConstantLR(opt, factor=1.0, total_iters=0)
    sched = SequentialLR(opt, [LinearLR(opt, start_factor=1 / warm, total_iters=warm - 1), after],
                         milestones=[warm]) if warm else after
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


@pytest.mark.parametrize("schedule,total", [
    (LRScheduleConfig(name="cosine", warmup_ratio=0.1, min_lr_ratio=0.0), 200),
    (LRScheduleConfig(name="cosine", warmup_ratio=0.25, min_lr_ratio=0.1), 40),
    (LRScheduleConfig(name="constant", warmup_ratio=0.2), 50),
])
def test_schedule_matches_torch_schedulers_at_every_step(schedule, total):
    ours = planned_lrs(schedule, total, lr=3e-4)
    ref = _torch_reference(schedule, total, lr=3e-4)
    for step in (0, 1, warmup_steps(schedule, total) - 1, warmup_steps(schedule, total), total // 2, total - 1):
        assert ours[step] == pytest.approx(ref[step], rel=1e-6, abs=1e-12), step
    torch.testing.assert_close(torch.tensor(ours), torch.tensor(ref), rtol=1e-6, atol=1e-12)


def test_cosine_without_warmup_matches_cosine_annealing():
    schedule = LRScheduleConfig(name="cosine", min_lr_ratio=0.05)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=99, eta_min=0.05)
    expected = []
    for _ in range(100):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    factor = lr_factor(schedule, 100)
    assert [factor(s) for s in range(100)] == pytest.approx(expected, rel=1e-6)
    assert factor(500) == pytest.approx(0.05)  # training past the plan stays at the floor


def test_constant_schedule_is_exactly_the_peak():
    assert planned_lrs(LRScheduleConfig(), 7, lr=1e-3) == [1e-3] * 7


def _two_group_optimizer(lr: float = 0.1):
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([{"name": "encoder", "params": [a]}, {"name": "heads", "params": [b], "lr": lr / 10}], lr=lr)
    return opt, a, b


def test_frozen_group_gets_exactly_zero_and_keeps_its_weights_under_adam_momentum():
    opt, a, b = _two_group_optimizer()
    sched = build_schedule(opt, LRScheduleConfig(name="cosine", warmup_ratio=0.2), total_steps=10)
    for _ in range(3):  # both train: Adam builds momentum for `a`
        (a.sum() + b.sum()).backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    sched.set_frozen(["encoder"])
    frozen = a.detach().clone()
    for _ in range(3):  # zero gradients, as DeepSpeed hands frozen parameters: momentum alone would move `a`
        a.grad = torch.zeros_like(a)
        b.sum().backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        assert opt.param_groups[0]["lr"] == 0.0
    assert torch.equal(a.detach(), frozen)
    sched.set_frozen([])
    factor = lr_factor(LRScheduleConfig(name="cosine", warmup_ratio=0.2), 10)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * factor(sched.last_epoch))
    assert opt.param_groups[1]["lr"] == pytest.approx(0.01 * factor(sched.last_epoch))


def test_state_dict_restores_step_and_frozen_groups_without_the_function():
    opt, _, _ = _two_group_optimizer()
    sched = build_schedule(opt, LRScheduleConfig(name="cosine"), total_steps=20)
    for _ in range(5):
        opt.step()
        sched.step()
    sched.set_frozen(["heads"])
    state = sched.state_dict()
    assert "factor" not in state and "optimizer" not in state
    torch.save(state, __import__("io").BytesIO())  # checkpoints pickle it: no closure inside
    opt2, _, _ = _two_group_optimizer()
    other = build_schedule(opt2, LRScheduleConfig(name="cosine"), total_steps=20)
    other.load_state_dict(state)
    assert other.last_epoch == 5 and other.frozen == frozenset({"heads"})
    assert isinstance(other, GroupSchedule) and callable(other.factor)


def test_deepspeed_steps_the_schedule_once_per_optimizer_step():
    """Under gradient accumulation 2, four micro batches are two optimizer steps: the lr of the third
    micro batch is the schedule's lr at step 1."""
    from mmlnb_dist.core.distributed import DistEnv, init_engine_process_group, plan_batch
    from mmlnb_dist.core.engine import OptimizerSpec, build_engine
    from mmlnb_dist.core.sections import DistributedConfig

    dist_cfg = DistributedConfig(gradient_clipping=0.0)
    env = DistEnv()
    init_engine_process_group(env, dist_cfg)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    schedule = LRScheduleConfig(name="cosine", warmup_ratio=0.5)
    built = build_engine(model, None, optimizer=OptimizerSpec("adamw", 1e-2), schedule=schedule, total_steps=4,
                         plan=plan_batch(4, 1, 2), dist=dist_cfg, env=env)
    seen = []
    for _ in range(4):
        seen.append(built.lr())
        loss = built.engine(torch.randn(2, 4)).sum()
        built.engine.backward(loss)
        built.engine.step()
    expected = planned_lrs(schedule, 4, 1e-2)
    assert seen == pytest.approx([expected[0], expected[0], expected[1], expected[1]])
