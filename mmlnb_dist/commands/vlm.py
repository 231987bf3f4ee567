"""`mmlnb-dist finetune-vlm | describe | export-vlm`: stage 1 (the description VLM)."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from . import DEFAULT_PROFILE, add_config_args, load_from_args, user_path


def _finetune(args: argparse.Namespace) -> int:
    from ..core.distributed import DistEnv
    from ..core.recipe import run
    from ..recipes import recipe_class

    cfg = load_from_args(args)
    if args.name_after_fusion_run:
        from ..recipes.vlm.config import vlm_run_name

        cfg.run.name = vlm_run_name(cfg.run.name)
    env = DistEnv.from_environment()
    if env.is_main:
        logging.getLogger(__name__).info("finetune-vlm: run folder %s", cfg.run.dir)
    result = run(recipe_class("vlm"), cfg, env)
    if env.is_main:  # every rank returns the result; print it once
        print(json.dumps(result, indent=2))
    return 0


def _check_adapter(adapter) -> None:
    from ..core.errors import UserError

    if adapter and not (Path(adapter) / "adapter_config.json").is_file():
        inside = Path(adapter) / "adapter"  # a fine-tuning run's folder: its adapter is in `adapter/`
        hint = (f"; {adapter} is a fine-tuning run's folder: give --adapter {inside}"
                if (inside / "adapter_config.json").is_file() else " (a peft adapter folder is expected)")
        # an unfinished run's folder, or one of its DeepSpeed checkpoints: the adapter comes at the run's end
        run = next((d for d in (Path(adapter), Path(adapter).parent.parent) if (d / "checkpoints").is_dir()
                    and (d / "config.yaml").is_file() and not (inside / "adapter_config.json").is_file()), None)
        if run is not None:
            hint = (f"; {run} is a fine-tuning run that has not finished: it writes {run / 'adapter'} at its end, and "
                    f"its DeepSpeed checkpoints are no adapters; finish it with `finetune-vlm --config "
                    f"{run / 'config.yaml'} run.resume=true`")
        raise UserError(f"--adapter {adapter}: no adapter_config.json{hint}")


def _describe(args: argparse.Namespace) -> int:
    from ..recipes.vlm.describe import run_describe

    cfg = load_from_args(args)
    _check_adapter(args.adapter)
    result = run_describe(cfg, vlm=args.vlm, adapter=args.adapter, shards_in=args.shards, out=args.out,
                          restart=args.restart)
    if "quality" in result:
        print(json.dumps({k: v for k, v in result.items() if k != "quality"}, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from ..recipes.vlm.merge import merge_and_export
    from ..recipes.vlm.model import dtype_for
    from ..recipes.vlm.trained_with import check_export_settings

    cfg = load_from_args(args)
    _check_adapter(args.adapter)
    check_export_settings(cfg.vlm, args.base or cfg.vlm.model, args.adapter)  # before the model loads
    out = merge_and_export(args.base or cfg.vlm.model, args.adapter, args.out, min_pixels=cfg.vlm.min_pixels,
                           max_pixels=cfg.vlm.max_pixels, dtype=dtype_for(args.dtype), seed=cfg.vlm.tiny_seed,
                           cache_dir=cfg.vlm.cache_dir, tiny_vision=cfg.vlm.tiny_vision, overwrite=args.overwrite)
    print(f"merged model written to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune-vlm", help="LoRA fine-tune Qwen2.5-VL on image-description pairs (stage 1)",
        description="Fine-tune the description VLM with LoRA under DeepSpeed. Run as one process, with "
        "`deepspeed --num_gpus N --no_local_rank --module mmlnb_dist.cli finetune-vlm ...` or torchrun. "
        "Pairs: vlm.pairs (a shard set whose samples carry `txt`). Checkpoints every vlm.checkpoint_every "
        "steps; resume a killed run with run.resume=true (without it, a run folder holding checkpoints is refused).",
    )
    p.add_argument("--name-after-fusion-run", action="store_true",
                   help="name the run `<run.name>-vlm`, as `pipeline` names its VLM run, beside the fusion run "
                   "`run.name` (launch/finetune_vlm.sh passes it when given no run.name=...)")
    add_config_args(p, DEFAULT_PROFILE)
    p.set_defaults(func=_finetune)

    p = sub.add_parser(
        "describe", help="generate a description for every patch of a shard set (cached, resumable)",
        description="Batched, distributed description generation into a new shard set with `txt` members.",
    )
    p.add_argument("--vlm", default=None, type=user_path,
                   help="base model (hub id, folder or `tiny`); default vlm.model")
    p.add_argument("--adapter", default=None, type=user_path, help="LoRA adapter folder from finetune-vlm")
    p.add_argument("--shards", default=None, type=user_path, help="input shard set; default data.shards")
    p.add_argument("--out", default=None, type=user_path, help="output shard set; default <shards>-described")
    p.add_argument("--restart", action="store_true",
                   help="delete an earlier (partial) output in --out and start over; without it a run continues "
                   "the output only if it was made with the same model, adapter, prompt, generation settings and "
                   "input, and is refused otherwise")
    add_config_args(p, DEFAULT_PROFILE)
    p.set_defaults(func=_describe)

    p = sub.add_parser(
        "export-vlm", help="merge a LoRA adapter into its base model and save it (safetensors + processor)",
    )
    p.add_argument("--base", default=None, type=user_path,
                   help="base model (hub id, folder or `tiny`); default vlm.model")
    p.add_argument("--adapter", required=True, type=user_path, help="LoRA adapter folder")
    p.add_argument("--out", required=True, type=user_path,
                   help="output folder: new or empty (built beside it, moved into place whole)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export-vlm output in --out")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"], help="saved weight dtype")
    add_config_args(p, DEFAULT_PROFILE)
    p.set_defaults(func=_export)
