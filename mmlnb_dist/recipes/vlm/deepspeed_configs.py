"""The DeepSpeed configs shipped in launch/deepspeed/ (`vlm_zero2.json`, `vlm_zero3.json`,
`vlm_zero3_offload.json`): generated from the rtx4090 profile's config; a test checks the shipped files match."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

from ...core.engine import deepspeed_config
from .batches import vlm_batch_plan

if TYPE_CHECKING:
    from ...config import Config

SHIPPED_DEEPSPEED = {
    "vlm_zero2.json": dict(zero_stage=2, offload_optimizer=False, offload_params=False),
    "vlm_zero3.json": dict(zero_stage=3, offload_optimizer=False, offload_params=False),
    "vlm_zero3_offload.json": dict(zero_stage=3, offload_optimizer=True, offload_params=True),
}


def shipped_deepspeed_configs(cfg: "Config") -> Dict[str, Dict[str, Any]]:
    """The JSONs of launch/deepspeed/vlm_*.json for `cfg` (the rtx4090 profile: bf16, 16 = 4 x 4 on 1 GPU)."""
    plan = vlm_batch_plan(cfg, 1)  # (the ZeRO settings below do not change the batch)
    return {name: deepspeed_config(cfg.distributed.model_copy(update=zero), plan)
            for name, zero in SHIPPED_DEEPSPEED.items()}
