"""Stage 2 training: optimisation, curriculum, evaluation, checkpoints."""
from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional

from pydantic import Field, model_validator

from .base import Section


class PhaseConfig(Section):
    start_epoch: int = Field(ge=0)
    """First epoch of this phase."""

    train_image_encoder: bool = True
    """Image encoder weights update in this phase."""

    train_text_encoder: bool = True
    """Text encoder weights update in this phase."""


class CurriculumConfig(Section):
    enabled: bool = True
    """Use the curriculum loss; off means lambda = 1 throughout (fused loss only: the paper's ablation)."""

    schedule: Literal["step", "linear", "cosine", "constant"] = "step"
    """lambda(e) shape: the authors' step schedule, linear, cosine, or constant at `start`."""

    start: float = Field(0.3, ge=0.0, le=1.0)
    """lambda before the ramp."""

    end: float = Field(1.0, ge=0.0, le=1.0)
    """lambda after the ramp."""

    ramp_start: int = Field(50, ge=0)
    """First epoch of the ramp."""

    ramp_end: int = Field(100, ge=0)
    """First epoch at `end`."""

    step_every: int = Field(10, ge=1)
    """Epochs per step of the step schedule."""

    phases: List[PhaseConfig] = [
        PhaseConfig(start_epoch=0, train_image_encoder=True, train_text_encoder=False),
        PhaseConfig(start_epoch=50, train_image_encoder=True, train_text_encoder=True),
        PhaseConfig(start_epoch=100, train_image_encoder=False, train_text_encoder=False),
    ]
    """Staged freezing: which encoders train from each phase's start epoch on."""

    @model_validator(mode="after")
    def _check_schedule(self) -> "CurriculumConfig":
        if self.ramp_end < self.ramp_start:
            raise ValueError(f"ramp_end ({self.ramp_end}) must be >= ramp_start ({self.ramp_start})")
        starts = [p.start_epoch for p in self.phases]
        if not starts or starts[0] != 0:
            raise ValueError("phases must start with a phase at start_epoch 0")
        if any(b <= a for a, b in zip(starts, starts[1:])):
            raise ValueError(f"phase start epochs must increase strictly (got {starts})")
        return self


class TrainConfig(Section):
    epochs: int = Field(150, ge=1)
    """Training epochs."""

    global_batch_size: int = Field(32, ge=1)
    """Samples per optimizer step across all ranks (micro batch x accumulation x world size)."""

    lr: float = Field(1e-4, gt=0.0)
    """Learning rate."""

    weight_decay: float = Field(0.0, ge=0.0)
    """Weight decay (Adam's L2 form when optimizer is adam, decoupled for adamw)."""

    optimizer: Literal["adam", "adamw"] = "adam"
    """Optimizer."""

    curriculum: CurriculumConfig = CurriculumConfig()
    """Curriculum loss weight and freezing phases."""

    cache_frozen_features: bool = True
    """Compute a frozen encoder's features once and reuse them while it stays frozen."""

    feature_cache: Literal["memory", "disk"] = "memory"
    """Where cached features live: in memory, or also on disk under `<run dir>/feature_cache` (reused on resume)."""

    feature_cache_dir: Optional[Path] = None
    """Folder of the disk feature cache; default `<run dir>/feature_cache` (tune points all trials at one)."""

    eval_batch_size: Optional[int] = Field(None, ge=1)
    """Samples per rank per evaluation batch; default: the training micro batch."""

    eval_every: int = Field(1, ge=1)
    """Evaluate on the validation split every this many epochs (and after the last)."""

    best_metric: Literal[
        "accuracy", "balanced_accuracy", "kappa", "quadratic_kappa", "f1_weighted", "precision_weighted",
        "recall_weighted", "auroc", "loss",
    ] = "balanced_accuracy"
    """Validation metric that picks the best checkpoint (higher is better, except loss)."""

    checkpoint_every: int = Field(1, ge=1)
    """Save a resumable checkpoint every this many epochs."""

    keep_checkpoints: int = Field(2, ge=1)
    """Latest checkpoints kept (the best one is always kept as well)."""

    log_every: int = Field(10, ge=1)
    """Log step metrics every this many optimizer steps."""
