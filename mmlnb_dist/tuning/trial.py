"""What one Tune trial runs.

Ray 2.60 pattern: the trial is a plain function that builds a fresh Ray Train `TorchTrainer` (its own
worker group, so every trial gets new processes: a DeepSpeed engine cannot be reused) and calls `.fit()`.
Workers report through `ray.train.report`; `TuneReportCallback` forwards rank 0's metrics to Tune, where
ASHA reads them. With `tune.use_ray_train=false` the recipe runs inside the trial process instead.

What runs is resolved through the recipe table: a recipe name (`fusion`) runs that recipe through
`core.recipe.run`; `vlm-fusion` runs the pipeline's stages (fine-tune, describe, train); `package.module:Name`
runs a recipe class (or a `run(cfg, env, report)` function) outside the table.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

RESULT_FILE = "trial_result.json"
PG_FILE = "train_placement_group.txt"
PIPELINES = {"vlm-fusion": "mmlnb_dist.pipeline:run_vlm_fusion"}
"""Trial targets that are pipelines of several stages rather than one recipe."""


def resolve_target(name: str) -> Callable[..., Dict[str, Any]]:
    """`run(cfg, env, report) -> result` for a recipe of the table, a pipeline, or `package.module:Name`."""
    from ..core.recipe import run
    from ..recipes import RECIPES, load_class

    if name in PIPELINES:
        target = load_class(PIPELINES[name])
    elif name in RECIPES:
        target = load_class(RECIPES[name].target)
    else:
        target = load_class(name)
    if isinstance(target, type):
        return lambda cfg, env=None, report=None: run(target, cfg, env, report)
    return target


def clean_metrics(metrics: Dict[str, Any]) -> Dict[str, float]:
    """Only finite-or-NaN numbers go to Tune (strings and paths would break searchers)."""
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, (int, float)) or hasattr(v, "item"):
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                continue
    return out


def _write_result(run_dir: Path, result: Dict[str, Any], seconds: float) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in result.items()}
    payload["trial_seconds"] = seconds
    (run_dir / RESULT_FILE).write_text(json.dumps(payload, indent=1, default=str))


def _worker_loop(config: Dict[str, Any]) -> None:
    """Runs in each Ray Train worker: one DeepSpeed rank of the recipe."""
    import ray.train
    import ray.train.torch
    import ray.util

    from ..config import config_from_dict
    from ..core.distributed import DistEnv

    ctx = ray.train.get_context()
    env = DistEnv(rank=ctx.get_world_rank(), world_size=ctx.get_world_size(),
                  local_rank=ctx.get_local_rank(), device=ray.train.torch.get_device())
    cfg = config_from_dict(config["cfg"], "tune trial")
    pg = ray.util.get_current_placement_group()
    if env.rank == 0 and pg is not None:
        # The driver removes this group if Tune stops the trial (ASHA) before Ray Train can (see driver).
        cfg.run.dir.mkdir(parents=True, exist_ok=True)
        (cfg.run.dir / PG_FILE).write_text(pg.id.hex())
    target = resolve_target(config["recipe"])
    t0 = time.time()

    def report(epoch: int, metrics: Dict[str, Any]) -> None:
        # every rank must call ray.train.report equally often (else training hangs): the recipe calls
        # `report` on all ranks, and only rank 0's values are forwarded to Tune.
        ray.train.report({**clean_metrics(metrics), "epoch": float(epoch)})

    result = target(cfg, env, report)
    if env.rank == 0:
        _write_result(cfg.run.dir, result or {}, time.time() - t0)


def fit_with_ray_train(cfg_dict: Dict[str, Any], recipe: str, run_dir: Path, tune_cfg, storage: Path) -> None:
    """Start a fresh TorchTrainer for this trial and wait for it."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    use_gpu = tune_cfg.gpus_per_trial > 0
    resources = {"CPU": tune_cfg.cpus_per_trial}
    if use_gpu:
        resources["GPU"] = tune_cfg.gpus_per_trial
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"cfg": cfg_dict, "recipe": recipe},
        scaling_config=ScalingConfig(num_workers=tune_cfg.workers_per_trial, use_gpu=use_gpu,
                                     resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name=run_dir.name, storage_path=str(storage / "_train"),
                             callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


def _single_process_env() -> None:
    """An in-process trial is rank 0 of 1: drop launcher variables it may have inherited from whoever started
    Ray (a stale MASTER_PORT made trials fail with EADDRINUSE); its 1-rank group needs no rendezvous."""
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(key, None)


def trial_config(params: Dict[str, Any], ctx: Dict[str, Any], trial_id: str) -> Dict[str, Any]:
    """The trial's full config: the base config, the sampled values, its own run folder, the shared cache and
    the search's tracking (a child run of the search's parent run; only the driver registers models)."""
    from .space import apply_params

    cfg_dict, applied = apply_params(ctx["base"], params, ctx["space"])
    run = cfg_dict.setdefault("run", {})
    run.update({"name": f"{ctx['name']}-{trial_id}", "output_dir": ctx["trials_dir"], "resume": False,
                "cache_dir": ctx["cache_dir"]})
    tracking = cfg_dict.setdefault("tracking", {})
    tracking.update({"uri": ctx["uri"], "parent_run_id": ctx["parent_run_id"], "register_name": None})
    return {"cfg": cfg_dict, "applied": applied}


def trial_main(params: Dict[str, Any], ctx: Dict[str, Any]) -> None:
    """The Tune trainable: config for this trial -> recipe (in a TorchTrainer) -> reports -> result file."""
    from ray import tune

    from ..config import TuneConfig, config_from_dict

    trial_id = tune.get_context().get_trial_id()
    built = trial_config(params, ctx, trial_id)
    cfg = config_from_dict(built["cfg"], f"trial {trial_id} ({built['applied']})")
    run_dir = cfg.run.dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "trial_params.json").write_text(json.dumps(built["applied"], indent=1, default=str))
    tune_cfg = TuneConfig.model_validate(ctx["tune"])
    t0 = time.time()
    if tune_cfg.use_ray_train:
        fit_with_ray_train(cfg.model_dump(mode="json"), ctx["recipe"], run_dir, tune_cfg, Path(ctx["storage"]))
    else:
        _single_process_env()
        result = resolve_target(ctx["recipe"])(
            cfg, None, lambda e, m: tune.report({**clean_metrics(m), "epoch": float(e)}))
        _write_result(run_dir, result or {}, time.time() - t0)


def read_trial_result(run_dir: Path) -> Optional[Dict[str, Any]]:
    path = Path(run_dir) / RESULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None
