"""The DeepSpeed engine, built one way for every recipe: seeding, the DeepSpeed config, the optimizer and the
learning-rate schedule.

    engine = build_engine(model, param_groups, optimizer=OptimizerSpec("adam", 1e-4), schedule=cfg.train.lr_schedule,
                          total_steps=n, plan=plan, dist=cfg.distributed, env=env)
    engine.module / engine.optimizer / engine.schedule / engine.ds_config

The recipe decides what trains (its parameter groups) and how long (total optimizer steps); this module builds
the optimizer and its `GroupSchedule` and hands both to `deepspeed.initialize`, so the learning rate is set in
exactly one place (`core.schedule`). The DeepSpeed config carries the batch math, ZeRO and precision; a user's
DeepSpeed JSON may replace it but may not bring its own optimizer or scheduler.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .distributed import BatchPlan, DistEnv
from .errors import ConfigError
from .logging import library_prints
from .schedule import GroupSchedule, build_schedule
from .sections import DistributedConfig, LRScheduleConfig

OWNED_KEYS = ("optimizer", "scheduler")
"""DeepSpeed keys a user JSON may not set: the recipe builds the optimizer and the schedule."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (the same seed on every rank gives identical initial weights)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimizer, and its peak learning rate and weight decay (from the recipe's config section)."""

    name: str = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0


def read_user_deepspeed_json(path: Union[str, Path], key: str = "distributed.deepspeed_config") -> Dict[str, Any]:
    """A user's DeepSpeed JSON, checked: it must exist, parse, and leave optimizer and scheduler to us."""
    path = Path(path)
    if path.is_dir():  # "file not found" sent the user looking for a path that exists
        raise ConfigError(f"{key}: {path} is a folder; give the DeepSpeed JSON file in it "
                          f"(for example launch/deepspeed/vlm_zero3.json)")
    if not path.is_file():  # a relative path is read from the folder the command runs in: said, not guessed
        raise ConfigError(f"{key}: file not found: {path}" + ("" if path.is_absolute() else
                          f" (relative to {Path.cwd()}, the folder the command runs in)"))
    try:
        ds = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {path} is not UTF-8 text; give a DeepSpeed JSON file") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{key}: {path} is not valid JSON ({err})") from None
    if not isinstance(ds, dict):  # the batch keys are set in it: a list or a number failed with a TypeError
        raise ConfigError(f"{key}: {path} is not a JSON object ({{\"zero_optimization\": ...}}) but a "
                          f"{type(ds).__name__}; give a DeepSpeed config file")
    conflicts = [k for k in OWNED_KEYS if k in ds]
    if conflicts:
        raise ConfigError(
            f"{key}: {path} sets {', '.join(repr(k) for k in conflicts)}, which the recipe builds itself (one "
            f"owner for the learning rate); remove {'them' if len(conflicts) > 1 else 'it'} and set the optimizer "
            f"and schedule in the config (train.optimizer, train.lr, train.lr_schedule or the stage's own keys)"
        )
    return ds


def deepspeed_config(dist: DistributedConfig, plan: BatchPlan, *, on_cpu: bool = False,
                     steps_per_print: int = 10**9) -> Dict[str, Any]:
    """The DeepSpeed config dict for this run: batch math, clipping, ZeRO and precision (a user JSON from
    `distributed.deepspeed_config` replaces all but the batch keys)."""
    if dist.deepspeed_config:
        ds = read_user_deepspeed_json(dist.deepspeed_config)
    else:
        zero: Dict[str, Any] = {"stage": dist.zero_stage}
        if dist.zero_stage >= 2 and dist.offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu", "pin_memory": not on_cpu}
        if dist.zero_stage == 3:
            if dist.offload_params:
                zero["offload_param"] = {"device": "cpu", "pin_memory": not on_cpu}
            zero["stage3_gather_16bit_weights_on_model_save"] = True
        ds = {"zero_optimization": zero}
        if dist.precision == "bf16":
            ds["bf16"] = {"enabled": True}
        elif dist.precision == "fp16":
            ds["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16}
    ds["train_batch_size"] = plan.global_batch
    ds["train_micro_batch_size_per_gpu"] = plan.micro_batch
    ds["gradient_accumulation_steps"] = plan.accumulation
    ds.setdefault("steps_per_print", steps_per_print)
    ds.setdefault("wall_clock_breakdown", False)
    if dist.gradient_clipping > 0:
        ds.setdefault("gradient_clipping", dist.gradient_clipping)
    return ds


def check_precision(dist: DistributedConfig, device: torch.device) -> None:
    """fp16 needs a GPU: DeepSpeed has none on the CPU, and said so ("Type fp16 is not supported on your device")
    only once the model and the engine were being built (in a pipeline: after its data and VLM stages)."""
    precision = precision_of(read_user_deepspeed_json(dist.deepspeed_config)) if dist.deepspeed_config \
        else dist.precision
    if precision == "fp16" and device.type != "cuda":
        key = "distributed.deepspeed_config" if dist.deepspeed_config else "distributed.precision"
        raise ConfigError(f"{key}: fp16 needs a GPU (DeepSpeed runs no fp16 on the {device.type}); use bf16 or fp32 "
                          f"on this machine")


def precision_of(ds: Dict[str, Any]) -> str:
    """fp32, bf16 or fp16, as the DeepSpeed config says."""
    if ds.get("bf16", {}).get("enabled"):
        return "bf16"
    return "fp16" if ds.get("fp16", {}).get("enabled") else "fp32"


def build_optimizer(param_groups: Sequence[Dict[str, Any]], spec: OptimizerSpec, ds: Dict[str, Any],
                    device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW over the recipe's parameter groups (each group may carry a `name`).

    ZeRO-Offload needs DeepSpeed's CPU Adam; on GPUs torch's fused kernel; on the CPU torch's default one.
    """
    groups = [dict(g) for g in param_groups]
    decoupled = spec.name == "adamw"
    offload = ds.get("zero_optimization", {}).get("offload_optimizer", {}).get("device") == "cpu"
    if offload:
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, lr=spec.lr, weight_decay=spec.weight_decay, adamw_mode=decoupled)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    kwargs = {"fused": True} if device.type == "cuda" else {}
    return cls(groups, lr=spec.lr, weight_decay=spec.weight_decay, **kwargs)


@dataclass
class Engine:
    """What `build_engine` returns: the DeepSpeed engine and the pieces it was built from."""

    engine: Any
    optimizer: torch.optim.Optimizer
    schedule: GroupSchedule
    ds_config: Dict[str, Any]
    plan: BatchPlan
    total_steps: int

    @property
    def module(self) -> torch.nn.Module:
        return self.engine.module

    def lr(self) -> float:
        """The largest current learning rate over the trainable groups (what a curve should show)."""
        return max(self.schedule.get_last_lr())


def build_engine(model: torch.nn.Module, param_groups: Optional[List[Dict[str, Any]]], *, optimizer: OptimizerSpec,
                 schedule: LRScheduleConfig, total_steps: int, plan: BatchPlan, dist: DistributedConfig,
                 env: DistEnv, ds_config: Optional[Dict[str, Any]] = None) -> Engine:
    """`deepspeed.initialize` with the recipe's model, parameter groups, optimizer and schedule.

    `param_groups` default to every parameter that requires a gradient. `ds_config` may be passed when the
    recipe needed it before building the model (ZeRO-3 partitioned loading); it is derived otherwise. The
    process group must exist (`core.recipe.run` creates it).
    """
    import deepspeed

    ds = ds_config if ds_config is not None else deepspeed_config(dist, plan, on_cpu=env.device.type == "cpu")
    if param_groups is None:
        param_groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    opt = build_optimizer(param_groups, optimizer, ds, env.device)
    sched = build_schedule(opt, schedule, total_steps)
    # Under Ray Train the torch process group is Ray's and DeepSpeed adopts it here, printing "... built
    # successfully" on every trial's console: it goes to the log.
    with library_prints("deepspeed"):
        engine, ds_opt, _, ds_sched = deepspeed.initialize(model=model, optimizer=opt, lr_scheduler=sched,
                                                           config=ds, dist_init_required=False)
    match_buffers_to_parameters(engine.module)
    return Engine(engine, opt, ds_sched or sched, ds, plan, total_steps)


def match_buffers_to_parameters(module: torch.nn.Module) -> None:
    """Cast floating-point buffers to the dtype of their module's parameters.

    DeepSpeed's bf16/fp16 modes cast parameters only: batch norm's running mean and variance stay fp32 and
    `batch_norm` then refuses the mix ("expected scalar type BFloat16 but found Float"). Only floating buffers of
    modules whose own parameters are floating and of one other dtype change; integer counters stay as they are.
    """
    for sub in module.modules():
        dtypes = {p.dtype for p in sub.parameters(recurse=False) if p.is_floating_point()}
        if len(dtypes) != 1:
            continue
        dtype = dtypes.pop()
        for name, buf in sub.named_buffers(recurse=False):
            if buf is not None and buf.is_floating_point() and buf.dtype != dtype:
                setattr(sub, name, buf.to(dtype))
