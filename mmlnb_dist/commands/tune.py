"""`mmlnb-dist tune`: a Ray Tune search over the training recipe."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Optional

from . import DEFAULT_PROFILE, add_config_args, load_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="hyperparameter search with Ray Tune (ASHA, random/grid/Optuna)",
                       description="Each trial runs the training recipe (in the trial's own process for one "
                       "rank; with tune.workers_per_trial > 1 in a group of DeepSpeed ranks kept for the whole "
                       "search, tune.worker_pool) and logs an MLflow child run under one parent run. Resume with "
                       "tune.resume=true; join a "
                       "cluster with --ray-address (tune.address) or RAY_ADDRESS. See docs/tune.md.")
    add_config_args(p, DEFAULT_PROFILE)
    p.add_argument("--space", type=Path,
                   help="search-space YAML: a file or a shipped space's name (curriculum, optimisation, lora, joint, "
                   "clip: tune/spaces/*.yaml); default: the trial recipe's own; overrides tune.space")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to join: `auto` (the cluster `ray start` recorded on this machine), HOST:PORT "
                   "or ray://HOST:10001; sets tune.address (default: RAY_ADDRESS, else a fresh local instance)")
    p.add_argument("--resume", nargs=0, action=_NoResumeFlag, help=argparse.SUPPRESS)
    p.set_defaults(func=_tune)


class _NoResumeFlag(argparse.Action):
    """`--resume`, as Ray Tune's users spell it: refused naming the override that resumes a search (it was
    "unrecognized arguments: --resume", under the top-level usage)."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error("--resume: no such option; resume the search with the override tune.resume=true (same command, "
                     "same tune.name)")


def _tune(args) -> int:
    from ..tuning.driver import run_search

    if args.ray_address is not None:  # a flag wins over the config file and the overrides
        args.overrides = list(args.overrides) + [f"tune.address={args.ray_address}"]
    from ..tuning.stop import SearchInterrupted

    cfg = load_from_args(args)
    refuse_best_config_over(cfg.tune.best_config, getattr(args, "config", None), cfg.tune.name)
    try:
        summary = run_search(cfg, args.space)
    except SearchInterrupted as err:  # Ray saved the search's state: no best of a partial search, exit as Ctrl-C
        print(f"mmlnb-dist tune: {err}", file=sys.stderr)
        return 130
    print(json.dumps({k: v for k, v in summary.items() if k != "cache"}, indent=1, default=str))
    trials = Path(summary["figure"]).with_name("trials.csv") if summary.get("figure") else "trials.csv"  # beside it
    failed = summary.get("errored_trials") or {}
    if failed:  # which trials failed and why, not only how many
        print(f"{len(failed)} of {summary['trials']} trials failed (see {trials}):\n"
              + "\n".join(f"  {tid}: {error}" for tid, error in failed.items()), file=sys.stderr)
    if summary.get("best_config"):
        print(f"best config: {summary['best_config']}" + _next_command(cfg.tune.recipe, summary["best_config"]))
        return 1 if summary["errored"] else 0
    print(f"no trial ended with a finite {cfg.tune.metric} ({summary.get('diverged', 0)} of {summary['trials']} "
          f"diverged, {summary['errored']} errored): nothing to pick; see {trials}", file=sys.stderr)
    return 1


def refuse_best_config_over(best: Optional[Path], config: Optional[str], name: str) -> None:
    """Refuse, before the search starts, a `tune.best_config` that names a file the search would overwrite when it
    ends and did not write: the `--config` file it starts from, or any file other than a best config of this search
    (`run.name: <tune.name>-best` under the same `tune.name`, which a resumed search writes again)."""
    import yaml

    from ..config import resolve_profile
    from ..core.errors import ConfigError
    from ..core.files import load_yaml

    if best is None or not best.is_file():
        return
    if config is not None and best.resolve() == resolve_profile(config).resolve():
        raise ConfigError(f"tune.best_config: {best} is the config file this search starts from (--config {config}): "
                          f"the search would overwrite it with the best trial's config when it ends; give another "
                          f"file (or leave tune.best_config unset: <storage_path>/<name>/best.yaml)")
    try:
        saved = load_yaml(best)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        saved = None
    run, tune = (saved.get(k) if isinstance(saved, dict) else None for k in ("run", "tune"))
    if not (isinstance(run, dict) and isinstance(tune, dict) and tune.get("name") == name
            and run.get("name") == f"{name}-best"):
        raise ConfigError(f"tune.best_config: {best} exists and is not a best config this search (tune.name={name}) "
                          f"wrote: the search would overwrite it when it ends; give a new file, or move that one away")


def _next_command(recipe: str, best: str) -> str:
    """The command that trains the best config (`best.yaml` names the searched table recipe in `train.recipe`): the
    `vlm-fusion` pipeline's stages run by `pipeline`; a recipe class outside the table, or a best.yaml that kept
    the base config's recipe, has none."""
    from ..config.tune import PIPELINES
    from ..core.files import load_yaml
    from ..recipes import RECIPES

    quoted = shlex.quote(best)  # usable as printed: a storage path with a space split into two arguments
    if recipe in PIPELINES:
        return f"  (train it: mmlnb-dist pipeline --config {quoted})"
    if recipe not in RECIPES:
        return ""
    try:
        saved = (load_yaml(Path(best)) or {}).get("train", {}).get("recipe")
    except OSError:  # not readable here: it names the searched recipe (`tuning.outcome`)
        saved = recipe
    # it kept the base config's recipe (one the searched recipe refuses): `train` would train that one
    return f"  (train it: mmlnb-dist train --config {quoted})" if saved == recipe else ""
