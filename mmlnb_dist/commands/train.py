"""`mmlnb-dist train` and `mmlnb-dist evaluate`: stage 2, the fusion classifier.

    mmlnb-dist train --config launch/profiles/rtx4090.yaml data.shards=shards/nbpath
    deepspeed --num_gpus 8 -m mmlnb_dist.cli train --config launch/profiles/node-8gpu.yaml
    torchrun --nproc_per_node 8 -m mmlnb_dist.cli train --config launch/profiles/node-8gpu.yaml
    mmlnb-dist train --config ... --print-deepspeed-config [--world-size 8]
    mmlnb-dist evaluate --config ... --export runs/<name>/export [--split test]
    mmlnb-dist evaluate --config ... --checkpoint runs/<name>/checkpoints [--tag epoch-0042]
"""
from __future__ import annotations

import argparse
import json
import os

from . import DEFAULT_PROFILE, add_config_args, load_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train the dual-branch PRMF classifier (stage 2) from shards",
                       description="Train the MMLNB fusion classifier. Runs as one process, or under the "
                       "deepspeed / torchrun launchers (one process per GPU, several nodes with a hostfile).")
    add_config_args(p, DEFAULT_PROFILE)
    p.add_argument("--print-deepspeed-config", action="store_true",
                   help="print the DeepSpeed JSON this config generates and exit (nothing is trained)")
    p.add_argument("--world-size", type=int, default=None,
                   help="with --print-deepspeed-config: the world size to derive batch keys for (default: "
                   "the launcher's, else 1)")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher adds it
    p.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="print the seven metrics and the confusion matrix of a trained model",
                       description="Evaluate an export folder or a DeepSpeed checkpoint on one split.")
    add_config_args(e, DEFAULT_PROFILE)
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--export", metavar="DIR", help="an export folder (runs/<name>/export)")
    src.add_argument("--checkpoint", metavar="DIR", help="a checkpoints folder (runs/<name>/checkpoints)")
    e.add_argument("--tag", default=None, help="checkpoint tag (default: the best, else the latest)")
    e.add_argument("--split", default="val", help="split to evaluate (default: val)")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    e.set_defaults(func=_evaluate)


def _check_before_work(cfg) -> None:
    """Problems found without touching a GPU or a shard: raised as user errors before any work starts."""
    from pathlib import Path

    from ..cli import UserError
    from ..data.shards import read_manifest
    from ..distributed import DistEnv, plan_batch
    from ..models.encoders import IMAGE_ENCODERS

    if cfg.model.fusion.mode != "text_only" and cfg.model.image_encoder.name not in IMAGE_ENCODERS:
        raise UserError(f"model.image_encoder.name: unknown encoder '{cfg.model.image_encoder.name}'; "
                        f"choose one of {sorted(IMAGE_ENCODERS)}")
    env = DistEnv.from_environment()
    try:
        plan_batch(cfg.train.global_batch_size, env.world_size, cfg.distributed.micro_batch_per_gpu)
    except ValueError as err:
        raise UserError(f"train.global_batch_size: {err}") from None
    last_phase = cfg.train.curriculum.phases[-1].start_epoch
    if last_phase >= cfg.train.epochs:
        print(f"note: train.curriculum.phases start at epoch {last_phase} >= train.epochs {cfg.train.epochs}; "
              f"later phases never run")
    if cfg.distributed.deepspeed_config and not Path(cfg.distributed.deepspeed_config).is_file():
        raise UserError(f"distributed.deepspeed_config: file not found: {cfg.distributed.deepspeed_config}")
    try:
        manifest = read_manifest(cfg.data.shards)
    except Exception as err:  # the data module's own error names the problem
        raise UserError(f"data.shards: {err}") from None
    for split in ("train", "val"):
        if not manifest.get("splits", {}).get(split, {}).get("num_samples"):
            raise UserError(f"data.shards: {cfg.data.shards} has no '{split}' samples")
    ckpts = Path(cfg.run.dir) / "checkpoints"
    if not cfg.run.resume and ckpts.is_dir() and any(ckpts.iterdir()):
        raise UserError(f"{ckpts} already holds checkpoints: pass run.resume=true to continue, or change run.name")


def generated_deepspeed_config(cfg, world_size: int) -> dict:
    from ..distributed import deepspeed_config, plan_batch

    plan = plan_batch(cfg.train.global_batch_size, world_size, cfg.distributed.micro_batch_per_gpu)
    return deepspeed_config(cfg.distributed, plan, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                            optimizer=cfg.train.optimizer)


def _train(args: argparse.Namespace) -> int:
    cfg = load_from_args(args)
    if args.print_deepspeed_config:
        world = args.world_size or int(os.environ.get("WORLD_SIZE", 1))
        print(json.dumps(generated_deepspeed_config(cfg, world), indent=2))
        return 0
    _check_before_work(cfg)
    from ..recipes.train_fusion import run

    result = run(cfg)
    keys = [k for k in result if k.startswith(("val/", "test/")) and isinstance(result[k], float)]
    if int(os.environ.get("RANK", 0)) == 0:  # one summary line, not one per rank interleaved on stdout
        print(json.dumps({k: result[k] for k in ["run_dir", "best_epoch", "export_dir", *keys] if k in result}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ..cli import UserError
    from ..recipes.fusion_evaluate import evaluate_checkpoint, evaluate_export

    cfg = load_from_args(args)
    try:
        if args.export:
            metrics, classes = evaluate_export(cfg, args.export, args.split)
        else:
            metrics, classes = evaluate_checkpoint(cfg, args.checkpoint, args.split, args.tag)
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from None
    from ..metrics import format_metrics_table

    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(format_metrics_table(metrics, classes, f"{args.split} split ({args.export or args.checkpoint})"))
    _track_evaluation(cfg, args, metrics, classes)
    return 0


def _track_evaluation(cfg, args: argparse.Namespace, metrics: dict, classes) -> None:
    """Log the evaluation as its own MLflow run (rank 0 inside build_logger): metrics and confusion matrix."""
    from pathlib import Path

    from ..metrics import confusion_figure, scalar_metrics
    from ..tracking import build_logger

    if "mlflow" not in cfg.tracking.backends:
        return  # the table (or JSON) above is the stdout record
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"backends": ["mlflow"]})})
    run_dir = Path(cfg.run.output_dir) / f"{cfg.run.name}-evaluate"
    logger = build_logger(cfg, int(os.environ.get("RANK", 0)), run_dir, "evaluate",
                          tags={"model": str(args.export or args.checkpoint), "split": args.split})
    logger.log_metrics(scalar_metrics(metrics, f"{args.split}/"), step=0)
    if logger.wants_figures:
        logger.log_figure(confusion_figure(metrics["confusion_matrix"], classes, f"{args.split}"),
                          f"confusion_{args.split}.png")
    logger.close()
