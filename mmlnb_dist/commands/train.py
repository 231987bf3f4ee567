"""`mmlnb-dist train` (the recipe `train.recipe` names: the fusion classifier by default) and
`mmlnb-dist evaluate` (a trained model's export or checkpoint, with the metrics of its recipe: train.recipe).

    mmlnb-dist train --config launch/profiles/rtx4090.yaml data.shards=shards/nbpath
    deepspeed --num_gpus 8 -m mmlnb_dist.cli train --config launch/profiles/node-8gpu.yaml
    torchrun --nproc_per_node 8 -m mmlnb_dist.cli train --config launch/profiles/node-8gpu.yaml
    mmlnb-dist train --config ... --print-deepspeed-config [--world-size 8]
    mmlnb-dist evaluate --config ... --export runs/<name>/export [--split test]
    mmlnb-dist evaluate --config ... --checkpoint runs/<name>/checkpoints [--tag epoch-0042]
    mmlnb-dist evaluate --config clip-multilabel data.shards=... --export runs/<name>/export --split test
"""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext
from pathlib import Path

from ..core.files import refuse_file_in_the_way, strict_json
from ..core.runlock import FolderLock, ReadLock
from ..data.shardset import SPLITS
from . import DEFAULT_PROFILE, add_config_args, load_from_args, positive_int, user_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a recipe from shards (train.recipe; default: the PRMF classifier)",
                       description="Train the recipe train.recipe names (fusion: the MMLNB dual-branch classifier). "
                       "Runs as one process, or under the deepspeed / torchrun launchers (one process per GPU, "
                       "several nodes with a hostfile).")
    add_config_args(p, DEFAULT_PROFILE)
    p.add_argument("--print-deepspeed-config", action="store_true",
                   help="print the DeepSpeed JSON this config generates and exit (nothing is trained)")
    p.add_argument("--world-size", type=positive_int, default=None,
                   help="with --print-deepspeed-config: the world size to derive batch keys for (default: "
                   "the launcher's, else 1)")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher adds it
    p.add_argument("--resume", nargs=0, action=_NoResumeFlag, help=argparse.SUPPRESS)
    p.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="print the metrics of a trained model on one split",
                       description="Evaluate an export folder or a DeepSpeed checkpoint on one split, with the "
                       "metrics of the recipe train.recipe names (fusion: the seven metrics and the confusion "
                       "matrix; clip: the multi-label metrics on the top-k prediction, export only). Without "
                       "--config, the run's own config.yaml beside the export or checkpoints folder (its recipe "
                       f"and shard set; override data.shards=... for another set), else {DEFAULT_PROFILE}.")
    add_config_args(e)
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--export", metavar="DIR", type=user_path, help="an export folder (runs/<name>/export)")
    src.add_argument("--checkpoint", metavar="DIR", type=user_path,
                     help="a checkpoints folder (runs/<name>/checkpoints)")
    e.add_argument("--tag", default=None, help="checkpoint tag (default: the best, else the latest)")
    e.add_argument("--split", default="val", choices=SPLITS, help="split to evaluate (default: val)")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    e.set_defaults(func=_evaluate)


class _NoResumeFlag(argparse.Action):
    """`--resume`, as other tools spell it: refused naming the override that continues a run (it was "unrecognized
    arguments: --resume")."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error("--resume: no such option; continue the run in the run folder with the override "
                     "run.resume=true (same config and run.name)")


def generated_deepspeed_config(cfg, world_size: int) -> dict:
    """The DeepSpeed JSON `train` generates for `cfg` at `world_size` (no optimizer or scheduler: the recipe
    builds those)."""
    from ..core.distributed import plan_batch
    from ..core.engine import deepspeed_config

    plan = plan_batch(cfg.train.global_batch_size, world_size, cfg.distributed.micro_batch_per_gpu)
    return deepspeed_config(cfg.distributed, plan)


def _refuse_tune_overrides(overrides) -> None:
    """`train` reads no `tune.*` key: such an override (`tune.num_samples=8`, meant for `mmlnb-dist tune`) gave a
    plain training run without a word. Refused before any work; a profile's own `tune:` section is fine."""
    from ..core.errors import ConfigError

    keys = [o.split("=", 1)[0].strip() for o in overrides or ()]
    tune_keys = [k for k in keys if k == "tune" or k.startswith("tune.")]
    if tune_keys:
        raise ConfigError(f"train never reads {', '.join(tune_keys)}: these overrides would change nothing. The "
                          f"tune.* settings are read by `mmlnb-dist tune` (a search; give them there), or drop them "
                          f"to train one run")


def _train(args: argparse.Namespace) -> int:
    from ..core.distributed import DistEnv
    from ..core.errors import UserError
    from ..recipes import refuse_unread_overrides

    if args.world_size is not None and not args.print_deepspeed_config:  # it was dropped: one process trained
        raise UserError("--world-size is read with --print-deepspeed-config only; a run's world size is its "
                        "launcher's (torchrun --nproc_per_node N, deepspeed --num_gpus N)")
    _refuse_tune_overrides(args.overrides)
    cfg = load_from_args(args)
    refuse_unread_overrides(args.overrides, cfg.train.recipe)
    env = DistEnv.from_environment()
    if args.print_deepspeed_config:
        print(json.dumps(generated_deepspeed_config(cfg, args.world_size or env.world_size), indent=2))
        return 0
    from ..core.recipe import run
    from ..recipes import recipe_class

    from ..core.tracking.journal import recorded_run

    refuse_file_in_the_way(Path(cfg.run.dir), "run.output_dir / run.name")

    result = run(recipe_class(cfg.train.recipe), cfg, env)
    keys = [k for k in result if k.startswith(("val/", "test/")) and isinstance(result[k], float)]
    if env.is_main:  # one summary line, not one per rank interleaved on stdout
        run_id = recorded_run(cfg.run.dir).get("run_id")  # the MLflow run, when the journal reached a store
        summary = {k: result[k] for k in ["run_dir", "best_epoch", "export_dir", *keys] if k in result}
        reg = result.get("registered") or {}
        if reg.get("registered"):
            summary["registered"] = f"models:/{reg['name']}/{reg['version']}"
        print(json.dumps(strict_json({**summary, **({"mlflow_run_id": run_id} if run_id else {})}), allow_nan=False))
        if run_id and "export_dir" in result and not result.get("registered"):
            print(f"register it: mmlnb-dist register --run {result['run_dir']} --name NAME", file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ..core.distributed import DistEnv
    from ..data.duplicates import warn_held_out_copies
    from ..recipes import spec_for

    is_main = DistEnv.from_environment().is_main  # under torchrun / deepspeed: one process per rank
    _refuse_model_path(args)
    if args.config is None:
        # the model's own run: its recipe, shard set and preprocessing; a profile's would name other data
        run_config = Path(args.export or args.checkpoint).parent / "config.yaml"
        args.config = str(run_config) if run_config.is_file() else DEFAULT_PROFILE
        if is_main:
            print(f"config: {args.config}" + (" (the run's own)" if run_config.is_file() else ""), file=sys.stderr)
    cfg = load_from_args(args)
    if is_main:
        warn_held_out_copies(cfg.data.shards, args.split)
    spec = spec_for(cfg.train.recipe)
    _refuse_early(cfg, spec, args.split)
    # One evaluation per split and run at a time: two would share one tracking journal and mix their MLflow runs;
    # and no build rewrites the shard set while it is read. Rank 0 alone holds the locks, as `core.recipe.run`
    # does for training (every rank taking the exclusive one refused all but the first). The other ranks cannot
    # get ahead of it: the evaluation starts by joining the process group, which waits for rank 0, and only rank
    # 0 writes (the tracking journal, stdout); a launcher stops them when rank 0 exits on a held folder.
    tracked = "mlflow" in cfg.tracking.backends and is_main
    if tracked:
        refuse_file_in_the_way(cfg.run.evaluation_dir(args.split), "run.output_dir / run.name")
    with ReadLock(Path(cfg.data.shards), "evaluate") if is_main else nullcontext(), \
            FolderLock(cfg.run.evaluation_dir(args.split), "evaluate") if tracked else nullcontext():
        return _evaluate_with(args, cfg, spec, is_main)


def _refuse_model_path(args: argparse.Namespace) -> None:
    """A missing `--export`/`--checkpoint` folder, a file, a run folder or a checkpoint tag's folder, named before
    the config is chosen: without a config.yaml beside it the default profile was read, and its shard set was
    the error ("shard folder not found: shards/demo")."""
    from ..core.errors import UserError

    flag, given, inside = ("--export", args.export, "export") if args.export else \
        ("--checkpoint", args.checkpoint, "checkpoints")
    path = Path(given)
    if args.export and args.tag:  # an export holds one set of weights: its metrics are no checkpoint's
        raise UserError(f"--tag {args.tag} names a checkpoint, and --export {path} has none; evaluate that "
                        f"checkpoint with --checkpoint {path.parent / 'checkpoints'} --tag {args.tag}, or drop --tag")
    if not path.exists():
        raise UserError(f"{flag} {path}: no such folder")
    if not path.is_dir():
        raise UserError(f"{flag} {path}: not a folder ({flag} takes a run's {inside} folder)")
    if (path / "config.yaml").is_file() and (path / inside).is_dir():
        raise UserError(f"{flag} {path} is a run folder; give the folder inside it: {flag} {path / inside}")
    if args.checkpoint and (path.parent / "latest").is_file():
        raise UserError(f"--checkpoint {path} is one checkpoint of {path.parent}; give --checkpoint {path.parent} "
                        f"--tag {path.name}")


def _refuse_early(cfg, spec, split: str) -> None:
    """Input mistakes found without work (the manifest is read and the split's shard files checked against it, no
    sample decoded), before the evaluation's folder and its lock exist: a refused command leaves nothing behind
    (docs/reliability.md)."""
    from ..core.distributed import DistEnv
    from ..core.errors import UserError
    from ..data.preflight import check_shard_files
    from ..data.shardset import ShardSet
    from ..recipes import RECIPES

    if not spec.evaluate and spec.name != "fusion":
        raise UserError(f"train.recipe: the {spec.name} recipe has no `evaluate` (recipes with one: fusion, "
                        f"{', '.join(n for n, s in sorted(RECIPES.items()) if s.evaluate)})")
    shards = ShardSet.open(cfg.data.shards)
    shards.require_split(split, "the split to evaluate")
    # The split's shard files as the manifest records them, as `train` checks before training: a shard edited in
    # place (same size, other labels or descriptions) was scored silently, its metrics taken for the set's.
    env = DistEnv.from_environment()
    check_shard_files(shards, cfg.data.loader.preflight, splits=[split], rank=env.rank, world_size=env.world_size)


def _evaluate_with(args: argparse.Namespace, cfg, spec, is_main: bool) -> int:
    from ..recipes import load_class

    if spec.evaluate:  # the recipe's own evaluation (clip: multi-label metrics of its export)
        report = load_class(spec.evaluate, "train.recipe")(cfg, export=args.export, checkpoint=args.checkpoint,
                                                           tag=args.tag, split=args.split, as_json=args.json)
        if is_main:  # every rank computes the same gathered metrics; one copy on stdout (one JSON document)
            print(report)
        return 0
    return _evaluate_fusion(args, cfg, is_main)


def _evaluate_fusion(args: argparse.Namespace, cfg, is_main: bool) -> int:
    from ..recipes.fusion.evaluate import (evaluate_checkpoint, evaluate_export, track_evaluation,
                                           trained_model_config)
    from ..recipes.fusion.metrics import format_metrics_table

    if args.export:
        metrics, classes = evaluate_export(cfg, args.export, args.split)
    else:
        cfg = trained_model_config(cfg, args.checkpoint)
        metrics, classes = evaluate_checkpoint(cfg, args.checkpoint, args.split, args.tag)
    if is_main:  # every rank holds the same gathered metrics; one copy on stdout (one JSON document)
        print(json.dumps(strict_json(metrics), indent=2, allow_nan=False) if args.json else
              format_metrics_table(metrics, classes, f"{args.split} split ({args.export or args.checkpoint})"))
    track_evaluation(cfg, str(args.export or args.checkpoint), args.split, metrics, classes)
    return 0
