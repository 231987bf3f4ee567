"""Stop training at the first optimizer step whose loss is not finite.

A run whose loss turns NaN or inf (a learning rate far too high, an fp16 overflow, a poisoned batch) otherwise
trains on with NaN weights to its last epoch: it checkpoints them, computes metrics from NaN scores (an AUROC
near 0.5 that reads like a bad model, not a broken one), picks a "best" epoch, exports and registers it. The guard
stops it at the step where it happened, before that step's checkpoint, logging or evaluation: every checkpoint
the run keeps holds finite weights.

Under a launcher every rank must stop at the same step (a rank that stopped alone would leave the others waiting
in their next collective), so `LossWatch.step_done` agrees on it with one scalar all-reduce per optimizer step.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch

from .distributed import DistEnv, all_reduce_sum
from .errors import UserError
from .sections import DistributedConfig


class TrainingDiverged(UserError):
    """The training loss was not finite at an optimizer step that changed the weights; nothing of it was saved."""


def diverged(where: str, detail: str, lrs: Dict[str, object], dist: DistributedConfig) -> TrainingDiverged:
    """The error for a loss that stopped being finite `where` (e.g. "at step 4 of epoch 0"), naming the learning
    rates `lrs` ({config key: value}) and what else a user can change to avoid it."""
    remedies = ["lower the learning rate (" + ", ".join(f"{k}={v}" for k, v in lrs.items()) + ")"]
    if not dist.gradient_clipping:
        remedies.append("clip gradients (distributed.gradient_clipping=1.0)")
    if dist.precision == "fp16":
        remedies.append("train in bf16 or fp32 (distributed.precision)")
    return TrainingDiverged(
        f"training diverged {where}: {detail}. The run stopped there; its checkpoints from before that step are "
        f"kept and hold finite weights. To avoid it, {'; '.join(remedies)}, in a new run (another run.name): "
        f"run.resume=true keeps these settings and would diverge again")


def trainable_tensors(module: torch.nn.Module) -> List[torch.Tensor]:
    """The weights an optimizer step changes, as this rank holds them: ZeRO-3 keeps each rank's partition in
    `ds_tensor` (the parameter itself is an empty placeholder between forwards)."""
    return [getattr(p, "ds_tensor", p) for p in module.parameters() if p.requires_grad]


class LossWatch:
    """Watches the micro-batch losses of one optimizer step (`see`) and, at the step's end (`step_done`), the
    weights it changed when they are about to be saved or evaluated; raises `TrainingDiverged` on every rank when
    any rank saw a non-finite loss or holds a non-finite trained weight after a step the optimizer applied.

    A finite loss can still give non-finite gradients (an overflow in the backward pass) and so NaN weights: the
    next step's loss shows it, but a checkpoint of this step would already hold them. So the weights are read at
    the steps a checkpoint or an evaluation follows, not at every step: reading them costs about as much as the
    optimizer step itself on a CPU (`benchmarks/divergence_guard.py`).

    Under fp16 DeepSpeed's loss scaler skips a step whose gradients overflowed (`was_step_applied()` is False):
    that step changed no weight, so it is counted (`skipped`), not fatal."""

    def __init__(self, env: DistEnv, lrs: Dict[str, object], dist: DistributedConfig) -> None:
        self.env, self.lrs, self.dist = env, lrs, dist
        """`lrs`: the learning rates the error names ({"train.lr": 3e-3, ...}); `dist`: the run's precision and
        gradient clipping."""
        self.first_bad: Optional[float] = None
        self.skipped = 0
        """Steps with a non-finite loss that the fp16 loss scaler skipped."""

    def see(self, loss: float) -> None:
        """One micro batch's loss (a float the loop has already read off the device)."""
        if self.first_bad is None and not math.isfinite(loss):
            self.first_bad = loss

    def step_done(self, applied: bool, where: str, saved: Optional[torch.nn.Module] = None) -> None:
        """The end of an optimizer step (collective under a launcher: every rank calls it at every step). `saved`:
        the model, when this step's weights are about to be checkpointed or evaluated (None: the loss only)."""
        value, self.first_bad = self.first_bad, None
        if value is not None and not applied:
            self.skipped += 1
        weights = trainable_tensors(saved) if applied and saved is not None else []
        # the largest |weight|: NaN or inf exactly when some weight is (a 2-norm could overflow on finite weights)
        largest = float(torch.nn.utils.get_total_norm(weights, float("inf"))) if weights else 0.0
        bad = applied and (value is not None or not math.isfinite(largest))
        ranks = int(all_reduce_sum(self.env, torch.tensor([float(bad)], device=self.env.device)).item()) \
            if self.env.is_distributed else int(bad)  # alone: no device tensor, no synchronisation
        if ranks:
            if value is not None:
                mine = f"the loss was {value}"
            elif not math.isfinite(largest):
                mine = "the loss was finite but the step left non-finite weights (non-finite gradients)"
            else:
                mine = "the loss and weights were finite on this rank"
            detail = f"on {ranks} of {self.env.world_size} ranks: {mine}" if self.env.is_distributed else mine
            raise diverged(where, detail, self.lrs, self.dist)


EXPORT_REMEDY = "train the model again (lower the learning rate if its training diverged)"
"""What to do about an export whose weights are not finite (`load_finite`)."""


def load_finite(path: Union[str, Path], remedy: str) -> Dict[str, torch.Tensor]:
    """A safetensors file's tensors, refused (UserError naming the file and its first bad tensor) when a float
    tensor holds NaN or inf: weights written by a training that diverged, or altered since. A model loaded from
    them scores every input from NaN logits (argmax: the first class). `remedy`: what to do about it."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UserError(f"{path} holds non-finite (NaN or inf) weights in {len(bad)} tensor(s), first {bad[0]}: "
                        f"the training that wrote it diverged, or the file was altered since; {remedy}")
    return state
