"""Evaluate a trained fusion classifier (an export folder or a DeepSpeed checkpoint) on one split.

Works as one process or under a launcher: each rank evaluates its share of the split (exactly once across
ranks) and the metrics are computed on the gathered predictions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..config import Config
from ..distributed import DistEnv


def _loader(cfg: Config, env: DistEnv, split: str, batch_size: int):
    from ..data.loader import build_loader_from_config
    from ..data.shards import read_manifest

    manifest = read_manifest(cfg.data.shards)
    if not manifest.get("splits", {}).get(split, {}).get("num_samples"):
        raise ValueError(f"{cfg.data.shards} has no '{split}' samples")
    return build_loader_from_config(cfg, split, env.rank, env.world_size, batch_size, "eval"), manifest["classes"]


def evaluate_export(cfg: Config, export_dir, split: str = "val",
                    env: Optional[DistEnv] = None) -> Tuple[Dict[str, Any], List[str]]:
    from ..checkpoint import load_exported_model
    from ..distributed import init_process_group
    from .fusion_steps import evaluate

    env = env or DistEnv.from_environment()
    init_process_group(env, cfg.distributed)
    model, _, classes = load_exported_model(export_dir, env.device)
    loader, shard_classes = _loader(cfg, env, split, cfg.train.eval_batch_size or 64)
    if list(shard_classes) != list(classes):
        raise ValueError(f"the export's classes {classes} differ from the shards' {shard_classes}")
    metrics, _ = evaluate(model, model, loader, {}, env, classes)
    return metrics, classes


def evaluate_checkpoint(cfg: Config, ckpt_dir, split: str = "val", tag: Optional[str] = None,
                        env: Optional[DistEnv] = None) -> Tuple[Dict[str, Any], List[str]]:
    """Rebuild the model from `cfg`, load a checkpoint tag (default: best, else latest) into a DeepSpeed
    engine and evaluate. Encoders are built without pretrained weights: the checkpoint holds all weights."""
    import deepspeed

    from ..checkpoint import load_checkpoint, read_best
    from ..distributed import deepspeed_config, init_engine_process_group, plan_batch
    from ..models import build_classifier
    from .fusion_steps import evaluate

    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {ckpt_dir}")
    env = env or DistEnv.from_environment()
    init_engine_process_group(env, cfg.distributed)
    loader, classes = _loader(cfg, env, split, cfg.train.eval_batch_size or 64)
    model_cfg = cfg.model.model_copy(deep=True)
    model_cfg.image_encoder.pretrained = False
    model_cfg.image_encoder.weights_path = None
    model = build_classifier(model_cfg, len(classes))
    plan = plan_batch(cfg.train.global_batch_size, env.world_size, cfg.distributed.micro_batch_per_gpu)
    ds = deepspeed_config(cfg.distributed, plan, lr=cfg.train.lr, on_cpu=env.device.type == "cpu")
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.param_groups(), config=ds)
    best = read_best(ckpt_dir)
    tag = tag or (best["tag"] if best else None)
    loaded, _ = load_checkpoint(engine, ckpt_dir, tag=tag, module_only=True)
    if loaded is None:
        raise FileNotFoundError(f"no checkpoint in {ckpt_dir}")
    metrics, _ = evaluate(engine.module, engine, loader, {}, env, list(classes))
    metrics["checkpoint_tag"] = loaded
    return metrics, list(classes)
