"""Distributed execution: the one source of truth for DeepSpeed settings and batch math."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .base import Section


class DistributedConfig(Section):
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    """torch.distributed backend; `auto` picks nccl with CUDA, gloo on CPU."""

    zero_stage: Literal[0, 1, 2, 3] = 0
    """DeepSpeed ZeRO stage."""

    offload_optimizer: bool = False
    """ZeRO-3 (or 2): keep optimizer states in CPU memory."""

    offload_params: bool = False
    """ZeRO-3: keep parameters in CPU memory between uses."""

    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Training precision. bf16 on Ampere or newer GPUs; fp16 uses dynamic loss scaling."""

    gradient_clipping: float = Field(1.0, ge=0.0)
    """Global gradient-norm clip (0 disables)."""

    micro_batch_per_gpu: Optional[int] = Field(None, ge=1)
    """Samples per GPU per forward pass; default: the global batch divided by world size (no accumulation)."""

    deepspeed_config: Optional[str] = None
    """Path to a DeepSpeed JSON to use verbatim instead of the generated one (batch keys are still derived)."""
