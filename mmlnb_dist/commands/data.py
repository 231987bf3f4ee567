"""`mmlnb-dist data synth`: write the embedded synthetic H&E-like data set."""
from __future__ import annotations

import argparse

from . import add_config_args, load_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="synthetic data")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    synth = dsub.add_parser(
        "synth",
        help="write the synthetic H&E-like patch set (PNG class folders, labels.csv, descriptions.jsonl)",
        description="Write synthetic neuroblastoma-like H&E patches (UD/PD/D) in class subfolders, with "
        "labels.csv (file, label, slide_id) and descriptions.jsonl. Values come from data.synth in the config; "
        "the flags below override them. The same seed writes the same bytes.",
        epilog="example: mmlnb-dist data synth --out shards/demo-src --n 600 --seed 0",
    )
    synth.add_argument("--out", metavar="DIR", help="output folder (default: data.synth_dir)")
    synth.add_argument("--n", type=int, help="number of patches (data.synth.n)")
    synth.add_argument("--size", type=int, help="patch side in pixels (data.synth.size)")
    synth.add_argument("--n-slides", type=int, help="number of slides (data.synth.n_slides)")
    synth.add_argument("--noisy-rate", type=float, help="share of noisy descriptions (data.synth.noisy_description_rate)")
    synth.add_argument("--seed", type=int, help="seed (data.synth.seed)")
    add_config_args(synth)
    synth.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    from ..core.errors import UserError

    flags = {"n": args.n, "size": args.size, "n_slides": args.n_slides,
             "noisy_description_rate": args.noisy_rate, "seed": args.seed}
    args.overrides = list(args.overrides) + [f"data.synth.{k}={v}" for k, v in flags.items() if v is not None]
    cfg = load_from_args(args)  # validates the flags too (e.g. --n 0 names data.synth.n)
    s = cfg.data.synth
    out = args.out or str(cfg.data.synth_dir)

    from ..data.synthetic import make_synthetic_dataset

    try:
        summary = make_synthetic_dataset(out, n=s.n, size=s.size, n_slides=s.n_slides,
                                         noisy_description_rate=s.noisy_description_rate, seed=s.seed,
                                         progress=True)
    except (ValueError, OSError) as err:
        if isinstance(err, UserError):
            raise
        raise UserError(str(err)) from None
    counts = ", ".join(f"{k} {v}" for k, v in summary["class_counts"].items())
    print(f"wrote {summary['num_samples']} patches ({counts}) from {s.n_slides} slides to {out}; "
          f"{summary['noisy_descriptions']} noisy descriptions")
    return 0
