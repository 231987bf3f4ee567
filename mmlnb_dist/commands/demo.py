"""`mmlnb-dist demo`: the main job on the embedded default (CPU, synthetic data, tiny models, local MLflow)."""
from __future__ import annotations

import argparse

from . import DEFAULT_PROFILE, add_config_args, load_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on the embedded default (synthetic data, tiny models, CPU)",
        description="Generate the synthetic H&E-like set, build shards, fine-tune the tiny VLM with LoRA, "
        "describe every patch, train the PRMF fusion classifier and print the paper's seven metrics. "
        "Stages whose outputs are up to date are skipped, so a rerun continues where it stopped.",
    )
    add_config_args(p, default=DEFAULT_PROFILE)
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from ..pipeline import paper_table, run_demo

    cfg = load_from_args(args)
    results = run_demo(cfg)
    print("\nstages:")
    for r in results:
        state = "skipped (up to date)" if r.skipped else f"{r.seconds:.1f}s"
        print(f"  {r.name:<14} {state:<22} {r.output}")
    metrics = results[-1].info.get("metrics", {})
    if "val/accuracy" in metrics:
        print("\n" + paper_table(metrics, "val"))
    return 0
