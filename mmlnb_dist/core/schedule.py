"""The learning rate: one owner for every stage.

    lr(group, step) = group's peak lr x factor(step) x (0 while the group is frozen)

`factor` is a linear warmup followed by a constant or a cosine decay (`LRScheduleConfig`). `GroupSchedule` is a
`torch.optim.lr_scheduler.LRScheduler`: the recipe builds it with its optimizer and hands both to
`deepspeed.initialize`, which steps it after every optimizer step and stores it in checkpoints. Nothing else
writes a learning rate: a recipe that freezes part of its model (the fusion curriculum's phases) says which
parameter groups are frozen, and the schedule gives them a learning rate of exactly 0, so Adam's momentum
cannot move a frozen weight (DeepSpeed hands frozen parameters zero gradients, not none).
"""
from __future__ import annotations

import logging
import math
from typing import Callable, Dict, Iterable, List, Optional, Union

import torch

from .sections import LRScheduleConfig

log = logging.getLogger(__name__)


def warmup_steps(schedule: LRScheduleConfig, total_steps: int) -> int:
    return int(round(schedule.warmup_ratio * total_steps))


def lr_factor(schedule: LRScheduleConfig, total_steps: int) -> Callable[[int], float]:
    """factor(step), with step counted from 0 (the first optimizer step).

    Warmup: (step + 1) / W for step < W, so the first step already trains (torch's `LinearLR` with
    start_factor 1/W). Then `constant` stays at 1; `cosine` falls from 1 at step W to `min_lr_ratio` at the last
    step (torch's `CosineAnnealingLR` with T_max = total - W - 1), and stays there if training runs longer.
    """
    warm = warmup_steps(schedule, total_steps)
    floor = schedule.min_lr_ratio
    decay = max(1, total_steps - warm - 1)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if schedule.name == "constant":
            return 1.0
        t = min(step - warm, decay)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * t / decay))

    return factor


class GroupSchedule(torch.optim.lr_scheduler.LRScheduler):
    """Per-group peak lr x `factor(step)`, and 0 for frozen groups (named by the group's `"name"` key)."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: Callable[[int], float]):
        self.factor = factor
        self.frozen: frozenset = frozenset()
        super().__init__(optimizer)

    def get_lr(self) -> List[float]:
        f = self.factor(self.last_epoch)
        return [0.0 if group.get("name") in self.frozen else base * f
                for group, base in zip(self.optimizer.param_groups, self.base_lrs)]

    def set_frozen(self, names: Iterable[str]) -> None:
        """Freeze exactly these groups from now on (the others train) and apply it to the current step."""
        self.frozen = frozenset(names)
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        # The factor is a closure rebuilt from the config; checkpoints keep only the step and the frozen set.
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "factor")}


def build_schedule(optimizer: torch.optim.Optimizer, schedule: LRScheduleConfig, total_steps: int) -> GroupSchedule:
    if schedule.warmup_ratio > 0 and warmup_steps(schedule, total_steps) == 0:  # (asked for, and silently none)
        log.warning("lr_schedule.warmup_ratio=%g of this run's %d optimizer steps rounds to 0 warmup steps: the run "
                    "trains at the full learning rate from its first step; at least 1 warmup step needs a ratio "
                    "above %g (0.5 / %d steps), or train longer", schedule.warmup_ratio, total_steps,
                    0.5 / max(total_steps, 1), total_steps)
    return GroupSchedule(optimizer, lr_factor(schedule, total_steps))


def planned_lrs(schedule: LRScheduleConfig, total_steps: int, lr: float) -> List[float]:
    """The learning rate of every optimizer step of the run (for the logged curve)."""
    factor = lr_factor(schedule, total_steps)
    return [lr * factor(s) for s in range(total_steps)]


def planned_group_lrs(schedule: GroupSchedule, total_steps: int,
                      frozen_at: Optional[Callable[[int], Iterable[str]]] = None) -> Dict[str, List[float]]:
    """Each parameter group's learning rate at every optimizer step of the run, groups of one curve as one curve
    named by their names (a VLM's merger and LoRA groups, CLIP's towers and head, apart when their rates differ):
    what the run's lr figure shows, so it agrees with the rates the run logs. `frozen_at(step)` names the groups
    frozen at that step (the fusion curriculum's phases): the schedule gives them 0 there, and so does the plan."""
    frozen = [frozenset(frozen_at(s)) if frozen_at is not None else frozenset() for s in range(total_steps)]
    by_curve: Dict[tuple, List[str]] = {}
    for i, (group, peak) in enumerate(zip(schedule.optimizer.param_groups, schedule.base_lrs)):
        curve = tuple(0.0 if group.get("name") in frozen[s] else peak * schedule.factor(s) for s in range(total_steps))
        by_curve.setdefault(curve, []).append(str(group.get("name", f"group {i}")))
    return {", ".join(names): list(curve) for curve, names in by_curve.items()}


def schedule_figure(lrs: Union[List[float], Dict[str, List[float]]], title: Optional[str] = None):
    """The learning-rate curve (or one per group: `planned_group_lrs`) as a matplotlib figure (no pyplot: safe in
    servers and Ray workers)."""
    from matplotlib.figure import Figure

    curves = lrs if isinstance(lrs, dict) else {"": lrs}
    fig = Figure(figsize=(6, 3))
    ax = fig.add_subplot(1, 1, 1)
    styles = ("-", "--", ":", "-.")
    for i, (name, values) in enumerate(curves.items()):
        # each rate holds for its whole step (a phase boundary is a jump to 0, not a ramp); steps are counted from 1,
        # as the run's metrics count them (train/lr at step k is the plan's value k-1). Curves coincide over spans
        # (a group frozen later trains at the others' rate until then): each drawn narrower and in another style
        # than the one before, so none hides another.
        ax.plot(range(1, len(values) + 1), values, drawstyle="steps-post", linestyle=styles[i % len(styles)],
                linewidth=max(0.8, 2.2 - 0.6 * i),
                label=f"{name} (peak {max(values, default=0):.2g})" if name else None)
    if len(curves) > 1:
        ax.legend(fontsize="small")
    ax.set(xlabel="optimizer step", ylabel="learning rate", title=title or "Learning-rate schedule")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    fig.tight_layout()
    return fig
