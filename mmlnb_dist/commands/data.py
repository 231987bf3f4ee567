"""`mmlnb-dist data synth`: write the embedded synthetic H&E-like data set."""
from __future__ import annotations

import argparse
from typing import Any, Dict

from . import add_config_args, load_from_args, user_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="synthetic data")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    synth = dsub.add_parser(
        "synth",
        help="write the synthetic H&E-like patch set (PNG class folders, labels.csv, descriptions.jsonl)",
        description="Write synthetic neuroblastoma-like H&E patches (UD/PD/D) in class subfolders, with "
        "labels.csv (file, label, slide_id) and descriptions.jsonl. Values come from data.synth in the config; "
        "the flags below override them. The same seed writes the same bytes. With --task multilabel: patches "
        "showing 1-3 of 12 findings, images/ and pairs.csv (image, text, labels, slide_id) with noisy captions, "
        "the input of `shards build --task multilabel`.",
        epilog="examples:\n  mmlnb-dist data synth --out shards/demo-src --n 600 --seed 0\n"
        "  mmlnb-dist data synth --task multilabel --out shards/ml-src --n 600 --size 128\n"
        "  mmlnb-dist shards build --input shards/ml-src/pairs.csv --task multilabel --out shards/ml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    synth.add_argument("--out", metavar="DIR", type=user_path, help="output folder (default: data.synth_dir)")
    synth.add_argument("--n", type=int, help="number of patches (data.synth.n)")
    synth.add_argument("--size", type=int, help="patch side in pixels (data.synth.size)")
    synth.add_argument("--n-slides", type=int, help="number of slides (data.synth.n_slides)")
    synth.add_argument("--noisy-rate", type=float,
                       help="share of noisy descriptions (data.synth.noisy_description_rate)")
    synth.add_argument("--seed", type=int, help="seed (data.synth.seed)")
    synth.add_argument("--task", choices=("single", "multilabel"), default=None,
                       help="single: UD/PD/D class folders; multilabel: findings + noisy captions CSV "
                       "(default: data.synth.task, single)")
    synth.add_argument("--omit-rate", type=float, help="multilabel: chance a caption omits a true finding "
                       "(data.synth.caption_omit_rate)")
    synth.add_argument("--wrong-rate", type=float, help="multilabel: chance a caption names a wrong finding "
                       "(data.synth.caption_wrong_rate)")
    synth.add_argument("--faint-rate", type=float, help="multilabel: chance a finding is drawn faint "
                       "(data.synth.faint_rate)")
    add_config_args(synth)
    synth.set_defaults(func=_synth)


def _synth(args: argparse.Namespace) -> int:
    flags = {"n": args.n, "size": args.size, "n_slides": args.n_slides,
             "noisy_description_rate": args.noisy_rate, "seed": args.seed, "caption_omit_rate": args.omit_rate,
             "caption_wrong_rate": args.wrong_rate, "faint_rate": args.faint_rate, "task": args.task}
    args.overrides = list(args.overrides) + [f"data.synth.{k}={v}" for k, v in flags.items() if v is not None]
    cfg = load_from_args(args)  # validates the flags too (e.g. --n 0 names data.synth.n)
    s = cfg.data.synth
    refuse_flags_of_other_task(s.task, {"single": {"--noisy-rate": args.noisy_rate},
                                        "multilabel": {"--omit-rate": args.omit_rate, "--wrong-rate": args.wrong_rate,
                                                       "--faint-rate": args.faint_rate}})
    from ..data.synth_set import write_synth_set

    out = args.out or str(cfg.data.synth_dir)
    try:
        summary = write_synth_set(out, s, "--out" if args.out else "--out (or data.synth_dir)", cfg.data.classes)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: "interrupted" alone left the user to delete the folder by hand
        import logging

        logging.getLogger(__name__).warning(
            "stopped: %s is incomplete (a shards build from it is refused); rerun the same command to complete it "
            "(the same settings write the same bytes)", out)
        raise
    if s.task == "multilabel":
        counts = ", ".join(f"{k} {v}" for k, v in summary["label_counts"].items())
        print(f"wrote {summary['num_samples']} multi-label patches from {summary['n_slides']} slides to {out} "
              f"({counts}); captions omit {summary['omitted_mentions']} and add {summary['wrong_mentions']} wrong "
              f"findings; {summary['faint_findings']} findings drawn faint")
        print(f"next: mmlnb-dist shards build --input {out}/pairs.csv --task multilabel --out <shards>")
        return 0
    counts = ", ".join(f"{k} {v}" for k, v in summary["class_counts"].items())
    print(f"wrote {summary['num_samples']} patches ({counts}) from {summary['n_slides']} slides to {out}; "
          f"{summary['noisy_descriptions']} noisy descriptions")
    return 0


def refuse_flags_of_other_task(task: str, flags: Dict[str, Dict[str, Any]]) -> None:
    """`flags` given ({task: {flag: value or None}}) that `task` does not read: a `UserError` naming them (they were
    dropped without a word: `data synth --omit-rate 0.3` wrote single-label data)."""
    from ..core.errors import UserError

    for other, values in flags.items():
        given = [flag for flag, value in values.items() if value is not None]
        if other != task and given:
            raise UserError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} read by --task {other} only "
                            f"(this command runs --task {task}); drop {'it' if len(given) == 1 else 'them'} or "
                            f"add --task {other}")
