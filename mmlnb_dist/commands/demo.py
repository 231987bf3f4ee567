"""`mmlnb-dist demo`: the main job on the embedded default (CPU, synthetic data, tiny models, local MLflow).

    mmlnb-dist demo                              # MMLNB: synth -> shards -> VLM LoRA -> describe -> PRMF fusion
    mmlnb-dist demo --recipe clip-multilabel     # seed 002: multi-label synth -> shards -> fine-tuned tiny CLIP
"""
from __future__ import annotations

import argparse

from . import DEFAULT_PROFILE, add_config_args, load_from_args

DEMO_PROFILES = {"mmlnb": DEFAULT_PROFILE, "clip-multilabel": "clip-multilabel"}
"""`--recipe` -> the shipped profile the demo runs."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on the embedded default (synthetic data, tiny models, CPU)",
        description="Generate a synthetic H&E-like set, build shards and train on it, then print the metrics. "
        "mmlnb (default): fine-tune the tiny VLM with LoRA, describe every patch, train the PRMF fusion "
        "classifier, print the paper's seven metrics. clip-multilabel: multi-label patches with noisy captions, "
        "fine-tuned tiny CLIP towers + MLP head, the seed's multi-label metrics. Stages whose outputs are up "
        "to date are skipped, so a rerun continues where it stopped.",
    )
    add_config_args(p, default=None)
    p.add_argument("--recipe", choices=sorted(DEMO_PROFILES), default="mmlnb",
                   help="which recipe's demo (default mmlnb); picks its profile unless --config is given")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from ..pipeline import metrics_table, paper_table, run_demo

    args.config = args.config or DEMO_PROFILES[args.recipe]
    cfg = load_from_args(args)
    results = run_demo(cfg)
    print("\nstages:")
    for r in results:
        state = "skipped (up to date)" if r.skipped else f"{r.seconds:.1f}s"
        print(f"  {r.name:<14} {state:<22} {r.output}")
    metrics = results[-1].info.get("metrics", {})
    if "val/accuracy" in metrics:
        print("\n" + paper_table(metrics, "val"))
    elif metrics:
        print("\n" + metrics_table(cfg, metrics))
    return 0
