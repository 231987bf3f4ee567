"""`mmlnb-dist ablate`: the recipe's ablation or baseline rows on the same shards, over seeds, in one table.

    mmlnb-dist ablate --config clip-multilabel data.shards=shards/quilt            # every row, seed 0
    mmlnb-dist ablate --config cpu-demo --rows full,no_text --seeds 0,1,2          # shards with reference text
    mmlnb-dist ablate --config cpu-demo --descriptions shards --rows full,concat   # no VLM stage
    mmlnb-dist ablate --config cpu-demo tune.max_concurrent=2                      # rows as Ray Tune trials
"""
from __future__ import annotations

import argparse
import sys

from ..core.errors import ConfigError
from . import DEFAULT_PROFILE, add_config_args, load_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="train a recipe's ablation / baseline rows over seeds and print one table",
                       description="Train each row of the recipe's ablation table (fusion: the paper's Table 2; "
                       "clip: the fused model against its baselines) on the same shards, for each seed, into "
                       "<run.output_dir>/<run.name>-study/<row>-seed<N> (beside the train run of the config, not in "
                       "it), and write table.md / table.json (mean ± std over "
                       "seeds, test split when the shards have one, the full model first). A rerun skips finished "
                       "runs and resumes an interrupted one. With MLflow tracking the rows are child runs of one "
                       "parent run. Fusion: data.shards holds the reference descriptions; the VLM is fine-tuned and "
                       "describes the shards once for all rows (the base VLM once more for no_fine_tune; with "
                       "vlm.finetune=false the base VLM describes for every row and no_fine_tune is left out). With "
                       "tune.max_concurrent > 1 the runs are Ray Tune trials.")
    add_config_args(p, DEFAULT_PROFILE)
    p.add_argument("--rows", default=None, help="comma-separated rows (default: all of the recipe's rows)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    p.add_argument("--descriptions", choices=["vlm", "shards"], default=None,
                   help="fusion: where the text comes from: vlm (default; generated once for the study) or shards "
                   "(the txt already in data.shards, no VLM stage; the no_fine_tune row is then left out, refused "
                   "if --rows names it). The clip recipe always reads data.shards' own captions: vlm is refused")
    p.add_argument("--list", action="store_true", help="list the recipe's rows and exit")
    p.set_defaults(func=_ablate)


def _ablate(args: argparse.Namespace) -> int:
    from ..core.distributed import DistEnv
    from ..core.logging import command_log
    from ..core.files import refuse_file_in_the_way
    from ..studies import run_study, study_folder, study_rows

    cfg = load_from_args(args)
    if args.list:
        rows, metrics = study_rows(cfg)
        for name, (description, overrides) in rows.items():
            print(f"{name:<14} {description}  [{' '.join(overrides)}]")
        return 0
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds: '{args.seeds}' is not a comma-separated list of integers") from None
    rows = [r.strip() for r in args.rows.split(",") if r.strip()] if args.rows is not None else None
    if rows == []:  # `--rows "$ROWS"` with an empty variable: not every row of the recipe (hours of training)
        raise ConfigError(f"--rows '{args.rows}' names no row; give some of {', '.join(study_rows(cfg)[0])}, or "
                          f"leave --rows out for all of them")
    train_jobs = None
    if cfg.tune.max_concurrent > 1:  # concurrent rows: Ray Tune trials (tuning sits above studies)
        from ..tuning.study import check_rows_fit, train_as_trials as train_jobs

        check_rows_fit(cfg)  # before the study's VLM stages: a row Ray could never place waited forever after them
    env = DistEnv.from_environment()
    folder = study_folder(cfg)  # beside the train run of this config (<run.output_dir>/<run.name>), not in it
    refuse_file_in_the_way(folder, "the study's folder <run.output_dir>/<run.name>-study")  # before its log
    log_path = folder / "study.log"
    if env.rank == 0:
        print(f"study: {folder}", flush=True)
    with command_log(log_path, env.rank):  # every run's full tables go to study.log; the console gets the table
        study = run_study(cfg, rows, seeds, descriptions=args.descriptions, train_jobs=train_jobs)
    if env.rank != 0:  # under a launcher every rank ran the study: rank 0 alone prints it (the exit code is all's)
        return 1 if study.failed else 0
    print(study.markdown)
    print(f"table: {study.study_dir / 'table.md'}, as a figure: {study.study_dir / 'table.png'}"
          + (f"  (MLflow parent run {study.parent_run_id})" if study.parent_run_id else ""))
    print(f"log: {log_path}" + ("  (each trial's run: <row>-seed<N>.log beside it)" if train_jobs else
                                 "  (every run's full metric tables)"))
    if study.failed:  # the table holds the other runs; the command still fails, so that a script sees it
        print(f"mmlnb-dist ablate: error: {len(study.failed)} run(s) failed: "
              + "; ".join(f"{name}: {error}" for name, error in study.failed.items())
              + f" (tracebacks in {log_path}; rerun the same command to retry them: finished runs are skipped)",
              file=sys.stderr)
        return 1
    return 0
