"""What one Tune trial runs.

Ray 2.60 pattern: the trial is a plain function that builds a fresh Ray Train `TorchTrainer` (its own
worker group, so every trial gets new processes: a DeepSpeed engine cannot be reused) and calls `.fit()`.
Workers report through `ray.train.report`; `TuneReportCallback` forwards rank 0's metrics to Tune, where
ASHA reads them. With `tune.use_ray_train=false` the recipe runs inside the trial process instead.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

RECIPES = {
    "fusion": "mmlnb_dist.recipes.train_fusion:run",
    "vlm-fusion": "mmlnb_dist.tuning.pipeline:run",
}
RESULT_FILE = "trial_result.json"
PG_FILE = "train_placement_group.txt"


def resolve_recipe(name: str) -> Callable[..., Dict[str, Any]]:
    """`fusion`, `vlm-fusion` or `package.module:function` -> the recipe's `run(cfg, env, report)`."""
    target = RECIPES.get(name, name)
    if ":" not in target:
        raise ValueError(f"tune.recipe '{name}' is neither {sorted(RECIPES)} nor 'module:function'")
    module, func = target.split(":", 1)
    return getattr(importlib.import_module(module), func)


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


@contextlib.contextmanager
def count_cache_loads(counts: Dict[str, int]):
    """Count frozen-feature cache hits (a `FeatureCache.load()` that found the file) and misses.

    The recipe does not report them, so the trial wraps the loader for its own duration, in a process
    that only runs this trial; the original method is restored afterwards.
    """
    try:
        from ..features import FeatureCache
    except ImportError:
        yield counts
        return
    original = FeatureCache.load

    def load(self) -> bool:
        found = original(self)
        counts["cache/hits" if found else "cache/misses"] += 1
        return found

    FeatureCache.load = load
    try:
        yield counts
    finally:
        FeatureCache.load = original


def _worker_loop(config: Dict[str, Any]) -> None:
    """Runs in each Ray Train worker: one DeepSpeed rank of the recipe."""
    import ray.train
    import ray.train.torch
    import ray.util

    from ..config import config_from_dict
    from ..distributed import DistEnv

    ctx = ray.train.get_context()
    env = DistEnv(rank=ctx.get_world_rank(), world_size=ctx.get_world_size(),
                  local_rank=ctx.get_local_rank(), device=ray.train.torch.get_device())
    cfg = config_from_dict(config["cfg"], "tune trial")
    pg = ray.util.get_current_placement_group()
    if env.rank == 0 and pg is not None:
        # The driver removes this group if Tune stops the trial (ASHA) before Ray Train can (see driver).
        cfg.run.dir.mkdir(parents=True, exist_ok=True)
        (cfg.run.dir / PG_FILE).write_text(pg.id.hex())
    recipe = resolve_recipe(config["recipe"])
    t0 = time.time()

    def report(epoch: int, metrics: Dict[str, Any]) -> None:
        # every rank must call ray.train.report equally often (else training hangs): the recipe calls
        # `report` on all ranks, and only rank 0's values are forwarded to Tune.
        ray.train.report({**clean_metrics(metrics), "epoch": float(epoch)})

    counts = {"cache/hits": 0, "cache/misses": 0}
    with count_cache_loads(counts):
        result = recipe(cfg, env, report=report)
    if env.rank == 0:
        _write_result(cfg.run.dir, {**counts, **(result or {})}, time.time() - t0)


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


def _own_rendezvous() -> None:
    """Give an in-process trial a 1-rank rendezvous on a free port of its own.

    Ray workers inherit the environment of whoever started Ray; a MASTER_PORT left there by a training in
    the driver's process (still listening) made every trial fail with EADDRINUSE. The trial process runs
    nothing else, so overwriting these variables here is safe.
    """
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)})


def trial_main(params: Dict[str, Any], ctx: Dict[str, Any]) -> None:
    """The Tune trainable: config for this trial -> recipe (in a TorchTrainer) -> reports -> result file."""
    from ray import tune

    from ..config import TuneConfig
    from ..config import config_from_dict
    from .space import apply_params

    trial_id = tune.get_context().get_trial_id()
    cfg_dict, applied = apply_params(ctx["base"], params, ctx["space"])
    cfg_dict.setdefault("run", {})
    cfg_dict["run"]["name"] = f"{ctx['name']}-{trial_id}"
    cfg_dict["run"]["output_dir"] = ctx["trials_dir"]
    cfg_dict["run"]["resume"] = False
    tracking = cfg_dict.setdefault("tracking", {})
    tracking["uri"] = ctx["uri"]
    tracking["parent_run_id"] = ctx["parent_run_id"]
    tracking["register_name"] = None  # only the driver registers (the best trial), never each trial
    cfg_dict.setdefault("tune", {})["shared_cache_dir"] = ctx["cache_dir"]
    train = cfg_dict.setdefault("train", {})
    if ctx.get("cache_field"):
        # one frozen-feature cache for all trials: equal encoders -> equal fingerprints -> cache hits
        train[ctx["cache_field"]] = ctx["cache_dir"]
        if "feature_cache" in ctx.get("train_fields", ()):
            train["feature_cache"] = "disk"
    cfg = config_from_dict(cfg_dict, f"trial {trial_id} ({applied})")
    run_dir = cfg.run.dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "trial_params.json").write_text(json.dumps(applied, indent=1, default=str))
    tune_cfg = TuneConfig.model_validate(ctx["tune"])
    t0 = time.time()
    if tune_cfg.use_ray_train:
        fit_with_ray_train(cfg.model_dump(mode="json"), ctx["recipe"], run_dir, tune_cfg, Path(ctx["storage"]))
    else:
        recipe = resolve_recipe(ctx["recipe"])
        _own_rendezvous()
        counts = {"cache/hits": 0, "cache/misses": 0}
        with count_cache_loads(counts):
            result = recipe(cfg, None, report=lambda e, m: tune.report({**clean_metrics(m), "epoch": float(e)}))
        _write_result(run_dir, {**counts, **(result or {})}, time.time() - t0)


def read_trial_result(run_dir: Path) -> Optional[Dict[str, Any]]:
    path = Path(run_dir) / RESULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not math.isnan(v)
