"""The DeepSpeed configs shipped in launch/deepspeed/ (`vlm_zero2.json`, `vlm_zero3.json`,
`vlm_zero3_offload.json`): generated from the rtx4090 profile's config; a test checks the shipped files match."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

from ...core.distributed import plan_batch
from ...core.engine import deepspeed_config

if TYPE_CHECKING:
    from ...config import Config

SHIPPED_DEEPSPEED = {
    "vlm_zero2.json": dict(zero_stage=2, offload_optimizer=False, offload_params=False),
    "vlm_zero3.json": dict(zero_stage=3, offload_optimizer=False, offload_params=False),
    "vlm_zero3_offload.json": dict(zero_stage=3, offload_optimizer=True, offload_params=True),
}


def shipped_deepspeed_configs(cfg: "Config") -> Dict[str, Dict[str, Any]]:
    """The JSONs of launch/deepspeed/vlm_*.json for `cfg` (the rtx4090 profile: bf16, 16 = 4 x 4 on 1 GPU)."""
    out = {}
    for name, zero in SHIPPED_DEEPSPEED.items():
        dcfg = cfg.distributed.model_copy(update=zero)
        plan = plan_batch(cfg.vlm.global_batch_size, 1, cfg.vlm.micro_batch_per_gpu or dcfg.micro_batch_per_gpu,
                          key="vlm.global_batch_size", micro_key="vlm.micro_batch_per_gpu")
        out[name] = deepspeed_config(dcfg, plan)
    return out
