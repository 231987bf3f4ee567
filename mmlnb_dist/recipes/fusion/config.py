"""The fusion recipe's config section (`fusion:`): the dual-branch model, the curriculum, frozen-feature caching.

Shared training settings (epochs, batch, optimizer, lr and its schedule, evaluation and checkpoint cadence)
are in the `train:` section (`core.sections.TrainConfig`).
"""
from __future__ import annotations

from typing import List, Literal, Optional

from pydantic import Field, model_validator

from ...core.config import PathText, Section
from ...models.config import ImageEncoderConfig, TextEncoderConfig

METRIC_NAMES = ("accuracy", "balanced_accuracy", "kappa", "quadratic_kappa", "f1_weighted", "precision_weighted",
                "recall_weighted", "auroc")
"""Scalar metrics of an evaluation, in table order (the paper's seven plus the ordinal kappa)."""

LOWER_IS_BETTER = frozenset({"loss"})
"""Metrics (of METRIC_NAMES and the loss) where lower is better: they select checkpoints and registered versions."""


class FusionModelConfig(Section):
    image_encoder: ImageEncoderConfig = ImageEncoderConfig()
    """Image branch."""

    text_encoder: TextEncoderConfig = TextEncoderConfig()
    """Text branch."""

    mode: Literal["prmf", "concat", "sum", "fixed_alpha", "image_only", "text_only"] = "prmf"
    """Fusion of the two branches; the non-PRMF values are the paper's Table 2 ablations."""

    confidence: Literal["paper", "authors"] = "paper"
    """PRMF confidence net: one linear layer on [I;T] (paper) or Linear-ReLU-Linear with 256 hidden (authors)."""

    confidence_hidden: int = Field(256, ge=1)
    """Hidden width of the authors' confidence MLP."""

    fixed_alpha: float = Field(0.5, ge=0.0, le=1.0)
    """Text weight when mode is fixed_alpha."""

    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    """Dropout before the classifier's linear layer."""


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


class FusionConfig(Section):
    model: FusionModelConfig = FusionModelConfig()
    """The dual-branch classifier: encoders, fusion block and heads (what the export stores)."""

    curriculum: CurriculumConfig = CurriculumConfig()
    """Curriculum loss weight and freezing phases."""

    cache_frozen_features: bool = True
    """Compute a frozen encoder's features once and reuse them while it stays frozen."""

    image_features: Optional[PathText] = None
    """A folder of extracted image features (`mmlnb-dist features extract`) to train and evaluate from instead of
    images: no image is decoded and the image encoder never runs. Only while the image encoder is frozen in every
    phase and `data.loader.augment` is false; the folder must come from this run's image encoder (name, weights
    digest), transform (data.loader.image_size, the encoder's mean/std) and shard set (data.shards), which is
    checked before training."""

    cpu_autocast: bool = False
    """On the CPU, run forward and loss under bf16 autocast (`torch.autocast("cpu", dtype=torch.bfloat16)`) with
    fp32 master weights, in training and evaluation; ignored on GPUs (use `distributed.precision` there) and when
    `distributed.precision` is not fp32. Speeds processors with AVX-512 BF16 / AMX; see BENCHMARKS.md
    "Fusion: bf16, channels-last, compile" for what it gains and what it changes in the metrics."""

    channels_last: bool = False
    """Keep the image encoder's weights and inputs in channels-last memory layout (same outputs, other kernels)."""

    compile: bool = False
    """`torch.compile` the encoders (in place: checkpoints and exports keep their names). The first steps of each
    new input shape pay the compilation."""

    record_train_keys: bool = False
    """Debugging and tests: append the keys of every training micro batch to `<run dir>/train_keys/rank-<r>.jsonl`
    (epoch, optimizer step, world size), so which samples an epoch trained on (across kills, resumes and
    changes of world size) can be checked. May change on resume."""

    feature_cache: Literal["memory", "disk"] = "memory"
    """Where cached features live: in memory, or also on disk (reused on resume) under `run.cache_dir`, else
    `<run dir>/feature_cache`. A set `run.cache_dir` (a Tune search sets one for all trials) implies disk."""
