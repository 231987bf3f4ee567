"""Curriculum: the loss weight lambda(e) and the staged-freezing phases.

    L = lambda(e) * CE(fused logits, y) + (1 - lambda(e)) * CE(image-only logits, y)

Early epochs lean on the image branch (lambda small); the fused prediction takes over as lambda -> 1.
Epochs are 0-based. The schedule is a pure function of the epoch, so resuming needs only the epoch number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from .config import CurriculumConfig, PhaseConfig


def curriculum_lambda(cfg: CurriculumConfig, epoch: int) -> float:
    """lambda(epoch) of the configured schedule (1.0 when the curriculum is disabled).

    step (the authors'): `start` before `ramp_start`; from `ramp_start` it rises every `step_every` epochs by
    (end - start) / (number of steps in the ramp, counting the final jump to `end`), reaching `end` at
    `ramp_end`. With start 0.3, end 1.0, ramp 50..100, every 10: 0.30, 0.44, 0.58, 0.72, 0.86, then 1.0.
    linear / cosine: a smooth ramp from `start` at `ramp_start` to `end` at `ramp_end`. constant: `start`.
    """
    if not cfg.enabled:
        return 1.0
    if cfg.schedule == "constant":
        return cfg.start
    if epoch < cfg.ramp_start:
        return cfg.start
    if epoch >= cfg.ramp_end:
        return cfg.end
    span = cfg.ramp_end - cfg.ramp_start
    if cfg.schedule == "step":
        n_steps = math.ceil(span / cfg.step_every)  # steps inside the ramp; the jump to `end` is one more
        inc = (cfg.end - cfg.start) / n_steps
        return round(cfg.start + ((epoch - cfg.ramp_start) // cfg.step_every) * inc, 10)
    frac = (epoch - cfg.ramp_start) / span
    if cfg.schedule == "cosine":
        frac = 0.5 * (1.0 - math.cos(math.pi * frac))
    return cfg.start + frac * (cfg.end - cfg.start)


def trained_lambda(cfg: CurriculumConfig, epoch: int, two_branch: bool) -> float:
    """The fused-loss weight the loss trains with at `epoch` (what the run logs and draws): lambda(epoch) for a
    two-branch model; 1 for a single-branch one, which has no image-only head and trains on CE(fused) alone."""
    return curriculum_lambda(cfg, epoch) if two_branch else 1.0


def ramp_cut_short(cfg: CurriculumConfig, epochs: int, two_branch: bool) -> Optional[str]:
    """Why the lambda schedule cannot reach `end` within `epochs` epochs (its ramp ends at or after the last
    epoch, `epochs - 1`), or None when it does, or lambda does not follow the ramp (disabled, constant, one branch).
    A profile's ramp with fewer `train.epochs` (the paper's 50..100 in a 5-epoch run) trains part of it only."""
    if not two_branch or not cfg.enabled or cfg.schedule == "constant" or cfg.ramp_end < epochs:
        return None
    last = epochs - 1
    reached = curriculum_lambda(cfg, last)
    if math.isclose(reached, cfg.end):
        return None
    where = (f"never leaves fusion.curriculum.start={cfg.start:g}" if cfg.ramp_start >= last
             else f"stops at {reached:.2f} at the last epoch ({last})")
    return (f"fusion.curriculum.ramp_start={cfg.ramp_start}, ramp_end={cfg.ramp_end} with train.epochs={epochs} "
            f"(epochs 0..{last}): lambda {where} and never reaches fusion.curriculum.end={cfg.end:g} (no epoch "
            f"trains at the end of the schedule); to train the whole schedule, set fusion.curriculum.ramp_end to at "
            f"most {last} (and ramp_start to at most that), or raise train.epochs above {cfg.ramp_end}")


def phases_never_run(cfg: CurriculumConfig, epochs: int) -> Optional[str]:
    """Which freezing phases start at or after `epochs` (so their encoder settings never apply), each named with
    its index and start epoch, or None when every phase runs. Naming only the last phase hid the others a short
    run skips (phases 0, 3, 6 in one epoch skip two)."""
    skipped = [f"fusion.curriculum.phases[{i}] (start_epoch {p.start_epoch})"
               for i, p in enumerate(cfg.phases) if p.start_epoch >= epochs]
    if not skipped:
        return None
    return (f"{', '.join(skipped)} start at or after train.epochs={epochs} (epochs 0..{epochs - 1}) and never run; "
            f"to run them, raise train.epochs above {cfg.phases[-1].start_epoch} or lower their start_epoch")


def phase_index(cfg: CurriculumConfig, epoch: int) -> int:
    """Index of the freezing phase that holds `epoch` (phases start at 0 and increase; checked by the config)."""
    index = 0
    for i, phase in enumerate(cfg.phases):
        if epoch >= phase.start_epoch:
            index = i
    return index


def phase_for_epoch(cfg: CurriculumConfig, epoch: int) -> PhaseConfig:
    return cfg.phases[phase_index(cfg, epoch)]


def curriculum_loss(logits: torch.Tensor, image_logits: Optional[torch.Tensor], target: torch.Tensor,
                    lam: float) -> torch.Tensor:
    """lambda * CE(fused) + (1 - lambda) * CE(image head); single-branch models use CE(fused) alone."""
    loss = F.cross_entropy(logits.float(), target)
    if image_logits is None or lam >= 1.0:
        return loss
    return lam * loss + (1.0 - lam) * F.cross_entropy(image_logits.float(), target)


@dataclass
class CurriculumState:
    """Where training stands in the curriculum; stored in checkpoints (the schedule itself is in the config)."""

    epoch: int = 0
    phase: int = 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "phase": self.phase}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.phase = int(state["phase"])
