"""`mmlnb-dist pipeline`: one command from slides or patches to a registered model, and its report.

    mmlnb-dist pipeline --config rtx4090 --slides wsi/ --labels labels.csv
    mmlnb-dist pipeline --config cpu-demo --patches patches/            # class folders, or a CSV
    mmlnb-dist pipeline --config cpu-demo --from train --until evaluate  # a slice of an earlier run
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_config_args, load_from_args

STAGE_HELP = "synth, tile, shards, finetune-vlm, describe, train, evaluate, register; with --slides, shards names tile"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipeline", help="slides or patches -> shards -> VLM LoRA -> describe -> train -> evaluate -> register",
        description="Run every stage with one config: tile slides (--slides/--labels) or build shards from "
        "patches (--patches), or reuse the verified shard set at data.shards; fine-tune the VLM, describe every "
        "patch, train the classifier, evaluate its best checkpoint on the test split (patch and slide level), "
        "register it in MLflow (the alias moves only when it beats the holder) and print a report (also "
        "<run.output_dir>/<run.name>-pipeline/report.md and an MLflow artifact). Stages whose outputs are up to "
        "date are skipped, interrupted ones resume. Under torchrun/deepspeed the VLM, describe, train and "
        "evaluate stages run on every rank, the others on rank 0.",
    )
    add_config_args(p)
    p.add_argument("--slides", type=Path, help="folder of whole-slide images (or CSV with a path column)")
    p.add_argument("--labels", type=Path, help="CSV slide_id,label for --slides")
    p.add_argument("--patches", type=Path, help="folder of class subfolders, or CSV path,label[,slide_id]")
    p.add_argument("--synthetic", action="store_true", help="generate the synthetic set of data.synth first")
    p.add_argument("--from", dest="first", metavar="STAGE", help=f"first stage to run ({STAGE_HELP})")
    p.add_argument("--until", dest="last", metavar="STAGE", help="last stage to run")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace, cfg=None) -> int:
    from contextlib import nullcontext

    from ..core.distributed import DistEnv
    from ..core.logging import command_log
    from ..core.runlock import FolderLock
    from ..pipeline import PipelineInputs, pipeline_dir, run_pipeline
    from ..pipeline.flow import check_pipeline

    cfg = cfg or load_from_args(args)
    env = DistEnv.from_environment()
    inputs = PipelineInputs(slides=args.slides, labels=args.labels, patches=args.patches,
                            synthetic=bool(getattr(args, "synthetic", False)))
    # refused before its log file is opened: a command that did nothing leaves nothing behind
    plan = check_pipeline(cfg, inputs, args.first, args.last, env, overrides=args.overrides)
    # One pipeline of a run.name at a time: a second found the first's open stages "running" and resumed them
    # beside it (both writing the synthetic set, the evaluation, the report). Taken before the log is opened, so a
    # refused second leaves nothing in the first's log. Rank 0 holds it for every rank.
    held = FolderLock(pipeline_dir(cfg), "mmlnb-dist pipeline") if env.is_main else nullcontext()
    with held, command_log(pipeline_dir(cfg) / "pipeline.log", env.rank):  # the report holds the results
        run = run_pipeline(cfg, inputs, env=env, plan=plan)
    if env.is_main:
        print("\n" + (run.report or ""))
    return 0
