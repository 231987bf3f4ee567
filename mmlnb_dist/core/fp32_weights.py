"""The consolidated fp32 weights of a live DeepSpeed engine's module, for a recipe's export.

Under ZeRO 1-3 the fp32 master weights are partitioned across ranks and DeepSpeed's `safe_get_full_fp32_param`
gathers them. At ZeRO stage 0 with bf16 or fp16, DeepSpeed 0.19.8 wraps the optimizer in `FP16_UnfusedOptimizer`
(checked on the CPU): `safe_get_full_fp32_param` returns None for its parameters, and the module holds only the
16-bit copies, so an "fp32" export read from the module lost the masters' precision (the bf16 rounding of every
weight). Its masters are in `fp32_groups`, one per parameter of `fp16_groups` (bf16 too), group by group.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch


def fp32_masters(optimizer: Any) -> Dict[int, torch.Tensor]:
    """id(module parameter) -> its fp32 master, for DeepSpeed's unfused 16-bit optimizer (ZeRO-0), which builds
    `fp32_groups[i]` from `fp16_groups[i]` parameter by parameter; {} for any other optimizer."""
    low, masters = getattr(optimizer, "fp16_groups", None), getattr(optimizer, "fp32_groups", None)
    if not low or not masters:
        return {}
    return {id(param): master for params, copies in zip(low, masters) for param, master in zip(params, copies)}


def full_fp32_state_dict(module: torch.nn.Module, optimizer: Optional[Any] = None) -> Dict[str, torch.Tensor]:
    """Consolidated fp32 weights. Collective under ZeRO 1/2 (master weights are partitioned across ranks and
    gathered by DeepSpeed's `safe_get_full_fp32_param`); at ZeRO-0 in bf16/fp16 the masters of `optimizer` (the
    engine's, `engine.optimizer`); buffers (batch-norm statistics) and parameters the optimizer does not hold
    (frozen ones) come from the module."""
    from deepspeed.utils import safe_get_full_fp32_param

    params = dict(module.named_parameters())
    masters = fp32_masters(optimizer) if optimizer is not None else {}
    state: Dict[str, torch.Tensor] = {}
    for name, tensor in module.state_dict().items():  # persistent buffers only, as load_state_dict expects
        if name in params:
            full = safe_get_full_fp32_param(params[name])
            if full is None:
                full = masters.get(id(params[name]))
            tensor = full if full is not None else params[name].detach()
        tensor = tensor.detach().cpu()
        state[name] = (tensor.float() if tensor.is_floating_point() else tensor).clone()
    return state
