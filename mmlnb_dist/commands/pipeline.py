"""`mmlnb-dist pipeline`: one command from slides or patches to a registered model, and its report.

    mmlnb-dist pipeline --config rtx4090 --slides wsi/ --labels labels.csv
    mmlnb-dist pipeline --config cpu-demo --patches patches/            # class folders, or a CSV
    mmlnb-dist pipeline --config cpu-demo --from train --until evaluate  # a slice of an earlier run
"""
from __future__ import annotations

import argparse
from pathlib import Path

from . import add_config_args, load_from_args

STAGE_HELP = "synth, tile, shards, finetune-vlm, describe, train, evaluate, register"


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
    from ..core.distributed import DistEnv
    from ..core.logging import add_log_file, details_in_log_file_only, log_failure_to_file, remove_log_file
    from ..pipeline import PipelineInputs, pipeline_dir, run_pipeline

    cfg = cfg or load_from_args(args)
    env = DistEnv.from_environment()
    log_file = add_log_file(pipeline_dir(cfg) / "pipeline.log", env.rank)
    inputs = PipelineInputs(slides=args.slides, labels=args.labels, patches=args.patches,
                            synthetic=bool(getattr(args, "synthetic", False)))
    try:
        with details_in_log_file_only():  # the report holds the results; the runs' full tables go to the log
            run = run_pipeline(cfg, inputs, first=args.first, last=args.last, env=env)
    except BaseException as err:
        log_failure_to_file(log_file, err)
        raise
    finally:
        remove_log_file(log_file)
    if env.is_main:
        print("\n" + (run.report or ""))
    return 0
