"""Saving the LoRA adapter from a DeepSpeed engine, ZeRO-3 included.

Under ZeRO-3 every parameter larger than `stage3_param_persistence_threshold` elements is partitioned: outside a
`deepspeed.zero.GatheredParameters` block a rank holds an empty placeholder (`numel() == 0`, `ds_status`
NOT_AVAILABLE) and its shard in `ds_tensor`. Copying such a parameter is what writes the well-known empty adapter
(peft #2892, trl #4416, DeepSpeed #7900). Here every rank joins the gather, rank 0 copies, and the copy refuses
any parameter that is still partitioned, so a missing gather is an error and never an empty file.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ...core.distributed import DistEnv, barrier

log = logging.getLogger(__name__)


class PartitionedParameterError(RuntimeError):
    """A ZeRO-3 parameter was about to be copied while its data lives in shards on other ranks."""


def is_partitioned(param: torch.Tensor) -> bool:
    """True for a ZeRO-3 parameter whose full data is not on this rank right now."""
    status = getattr(param, "ds_status", None)
    if status is not None and getattr(status, "name", "") == "NOT_AVAILABLE":
        return True
    return param.numel() == 0 and getattr(param, "ds_numel", 0) > 0


def copy_trainable(named: List[Tuple[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """CPU copies of `named` parameters; refuses (PartitionedParameterError) when any is still partitioned."""
    partitioned = [n for n, p in named if is_partitioned(p)]
    if partitioned:
        raise PartitionedParameterError(
            f"{len(partitioned)} of {len(named)} trainable parameters are partitioned by ZeRO-3 on this rank (first: "
            f"{partitioned[0]}); copying them now would save empty tensors. Gather them first, on every rank "
            f"(deepspeed.zero.GatheredParameters), as trainable_state_dict does")
    return {n: p.detach().cpu().clone() for n, p in named}


def trainable_state_dict(model: torch.nn.Module, env: DistEnv) -> Dict[str, torch.Tensor]:
    """Full copies of every trainable tensor (LoRA A/B and modules_to_save), on rank 0; {} elsewhere.

    Collective under ZeRO-3: GatheredParameters materialises the partitioned parameters on all ranks, so every
    rank must call this.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    zero3 = [p for _, p in named if hasattr(p, "ds_id")]
    if zero3:
        import deepspeed

        # Persistent tensors (below stage3_param_persistence_threshold) stay whole once a forward pass fetched them.
        log.info("ZeRO-3: %d of %d trainable tensors are partitioned across ranks at save (gathered to save)",
                 sum(is_partitioned(p) for _, p in named), len(named))

        with deepspeed.zero.GatheredParameters(zero3, modifier_rank=None):
            return copy_trainable(named) if env.is_main else {}
    return copy_trainable(named) if env.is_main else {}


def clear_unfinished_saves(run_dir: Path) -> None:
    """Remove what an adapter save killed mid-way (`save_adapter`) left beside its folder in `run_dir`: a hidden
    `.<folder>.saving` (the new adapter, perhaps torn) and `.<folder>.replaced` (the earlier one, set aside). Killed
    between the two moves, the folder itself is missing: the earlier adapter goes back in place, as a failed save
    leaves it. Rank 0, at the start of a fine-tuning run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    for staging in sorted(run_dir.glob(".*.saving")):
        out = run_dir / staging.name[1:-len(".saving")]
        old = out.with_name(f".{out.name}.replaced")
        if not out.exists() and old.is_dir():
            old.rename(out)
            log.warning("%s/ restored: a save of it was killed between its two moves", out)
        shutil.rmtree(staging, ignore_errors=True)
        log.warning("removed %s, what a save of %s/ killed mid-way left", staging, out.name)
    for old in sorted(run_dir.glob(".*.replaced")):
        shutil.rmtree(old, ignore_errors=True)
        log.warning("removed %s, an earlier adapter a killed save had set aside", old)


def save_adapter(model, out_dir: Path, env: DistEnv, base_path: Optional[str] = None) -> None:
    """Gather (all ranks) then write the peft adapter (rank 0); refuses to write an empty one."""
    from peft import get_peft_model_state_dict

    state = trainable_state_dict(model, env)
    if env.is_main:
        peft_state = get_peft_model_state_dict(model, state_dict=state)
        if not peft_state or any(t.numel() == 0 for t in peft_state.values()):
            raise PartitionedParameterError("refusing to save an empty LoRA adapter (parameters were not gathered)")
        if base_path is not None:
            model.peft_config["default"].base_model_name_or_path = base_path
        # Written beside, then moved into place: a kill or a full disk while saving (the end of a resumed run
        # rewrites `adapter/`) left new weights torn under the earlier adapter's config, which describe took.
        staging, old = (out_dir.with_name(f".{out_dir.name}.{what}") for what in ("saving", "replaced"))
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(str(staging), state_dict=state, safe_serialization=True)
        shutil.rmtree(old, ignore_errors=True)
        if out_dir.exists():
            out_dir.rename(old)
        staging.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    barrier(env)
