"""`mmlnb-dist shards build|verify`: write WebDataset shards from patches, and check them."""
from __future__ import annotations

import argparse
import json

from . import add_config_args, classes_override, load_from_args, user_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shards", help="build and verify WebDataset shard sets")
    ssub = p.add_subparsers(dest="shards_command", metavar="ACTION")
    ssub.required = True
    build = ssub.add_parser(
        "build",
        help="build train/val/test tar shards + manifest.json from a patch folder or CSV",
        description="Build WebDataset shards from a folder of class subfolders (UD/, PD/, D/) or a CSV with "
        "columns path|file, label[, slide_id, description]. A folder holding labels.csv is read through it; a "
        "descriptions.jsonl beside the inputs is attached. Options come from data.build (split fractions, "
        "stratification, grouping by slide, image format and size, shard size, seed). The output appears "
        "only when complete, and a stopped build resumes from the shards it finished; the same inputs and seed give "
        "byte-identical shards. With --task multilabel the "
        "input is a CSV of image, text and label set (columns and separator: data.multilabel or the flags "
        "below); bad rows are dropped and listed by row number and reason, the split is iteratively stratified.",
        epilog="examples:\n  mmlnb-dist shards build --input shards/demo-src --out shards/demo\n"
        "  mmlnb-dist shards build --input patches.csv --out shards/mine data.build.val_fraction=0.15 "
        "data.build.image_format=original\n"
        "  mmlnb-dist shards build --input pairs.csv --task multilabel --out shards/ml --label-merge merge.yaml "
        "--min-frequency 5 --max-labels 3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("--input", "-i", required=True, metavar="PATH", type=user_path,
                       help="folder of class subfolders, or CSV manifest")
    build.add_argument("--descriptions", metavar="FILE", type=user_path,
                       help="descriptions JSONL ({'file', 'description'} per line) or CSV (file, description), "
                            "matched to the inputs by path")
    build.add_argument("--out", "-o", metavar="DIR", type=user_path, help="output shard folder (default: data.shards)")
    build.add_argument("--classes", default=None,
                       help="comma-separated class names, in index order (default: data.classes, UD,PD,D; "
                       "multilabel: the sorted labels kept)")
    build.add_argument("--task", choices=("single", "multilabel"), default="single",
                       help="single: one class per patch (default); multilabel: image/text/label-set CSV")
    ml = build.add_argument_group("multilabel CSV (override data.multilabel.*)")
    for flag, key, kind, what in _MULTILABEL_FLAGS:
        ml.add_argument(flag, dest=f"ml_{key}", type=kind, default=None, help=f"{what} (data.multilabel.{key})")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(build)
    build.set_defaults(func=_build)

    verify = ssub.add_parser(
        "verify",
        help="check every shard against manifest.json (counts, sha256, decodable images, labels)",
        description="Check every shard of a shard set against its manifest: files present, sizes and sha256, "
        "per-class counts, unique keys, every image decodable, every class index valid. Prints a per-split, "
        "per-class table; exit code 1 and one line per problem (shard and key) when something is wrong.",
    )
    verify.add_argument("shard_dir", metavar="DIR", type=user_path, help="shard set folder (holds manifest.json)")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.set_defaults(func=_verify)


_MULTILABEL_FLAGS = (
    ("--image-column", "image_column", str, "column with the image path"),
    ("--text-column", "text_column", str, "column with the caption or report"),
    ("--labels-column", "labels_column", str, "column with the label set"),
    ("--group-column", "group_column", str, "slide or patient id column kept whole by the split"),
    ("--separator", "separator", str, "separator between labels in a cell"),
    ("--label-merge", "label_merge", str, "YAML mapping target: [sources]"),
    ("--min-frequency", "min_frequency", int, "labels on fewer rows are removed"),
    ("--max-labels", "max_labels", int, "rows with more labels are dropped"),
)


def _build(args: argparse.Namespace) -> int:
    from .data import refuse_flags_of_other_task

    refuse_flags_of_other_task(args.task, {
        "single": {"--descriptions": args.descriptions},
        "multilabel": {flag: getattr(args, f"ml_{key}") for flag, key, _, _ in _MULTILABEL_FLAGS}})
    if args.task == "multilabel":
        return _build_multilabel(args)
    from ..core.errors import UserError
    from ..data.build import build_shards
    from ..data.collect import collect_samples
    from ..data.verify import VerifyReport

    if args.classes is not None:
        args.overrides = list(args.overrides) + [classes_override(args.classes)]
    cfg = load_from_args(args)
    classes = cfg.data.classes
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise UserError(f"--classes (data.classes) needs at least two distinct names, got {classes}")
    out = args.out or str(cfg.data.shards)
    samples = collect_samples(args.input, classes, args.descriptions)
    manifest = build_shards(samples, out, cfg.data.build, classes,
                            provenance={"input": str(args.input), "descriptions": args.descriptions},
                            progress=not args.no_progress)
    counts = {split: info["class_counts"] for split, info in manifest["splits"].items()}
    print(VerifyReport([], counts, classes).table())
    n_shards = sum(len(info["shards"]) for info in manifest["splits"].values())
    print(f"wrote {n_shards} shards and manifest.json to {out}")
    _print_skipped(manifest)
    return 0


def _print_skipped(manifest: dict) -> None:
    from ..data.skipped import skipped_listing

    if manifest["skipped"]:
        print("\n".join(skipped_listing(manifest["skipped"])))


def _verify(args: argparse.Namespace) -> int:
    from ..data.verify import verify_shards

    report = verify_shards(args.shard_dir, progress=not args.no_progress)
    print(report.table())
    _print_label_counts(args.shard_dir)
    if report.ok:
        print(f"ok: {args.shard_dir}")
        return 0
    print(f"{len(report.problems)} problem(s):")
    for line in report.problems:
        print(f"  {line}")
    if len(report.problems) == len(report.strays):  # stray tars alone: each line says what to do with it
        return 1
    print(f"to repair: restore the shards named above (or {args.shard_dir}/manifest.json, if it was edited) from a "
          f"good copy, or rebuild the set with `mmlnb-dist shards build` (the same inputs and seed give the same "
          f"shards)")
    return 1


def _print_label_counts(shard_dir: str, title: str = "label counts (samples holding each label; the table above "
                       "counts each sample's first label only):") -> None:
    """Multi-label sets: the per-label table (samples holding each label), checked against the shards by verify."""
    from ..data.shardset import ShardSet

    manifest = ShardSet.open(shard_dir).manifest
    if manifest.get("task") != "multilabel":
        return
    vocab, splits = manifest["classes"], list(manifest["splits"])
    width = max(len("label"), *(len(c) for c in vocab))  # the header word too: labels may be shorter
    print(title)
    print(f"{'label'.ljust(width)}  " + "  ".join(s.rjust(6) for s in splits))
    for c in vocab:
        print(f"{c.ljust(width)}  " + "  ".join(str(_listed(manifest["splits"][s], c)).rjust(6)
                                                  for s in splits))


def _listed(split: dict, label: str) -> object:
    """A split's manifest count of `label`; '?' where a hand edit removed it (verify reports that split)."""
    counts = split.get("label_counts")
    return counts.get(label, "?") if isinstance(counts, dict) else "?"


def _build_multilabel(args: argparse.Namespace) -> int:
    from ..data.multilabel import build_multilabel_shards, format_dropped

    flags = {key: getattr(args, f"ml_{key}") for _, key, _, _ in _MULTILABEL_FLAGS}
    # JSON strings are YAML strings: a separator such as '|' or ';' stays text through the override parser
    args.overrides = list(args.overrides) + [f"data.multilabel.{k}={json.dumps(v)}" for k, v in flags.items()
                                             if v is not None]
    cfg = load_from_args(args)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    out = args.out or str(cfg.data.shards)
    manifest = build_multilabel_shards(args.input, out, cfg.data.build, cfg.data.multilabel, classes,
                                       provenance={"input": str(args.input)}, progress=not args.no_progress)
    vocab = manifest["classes"]
    _print_label_counts(out, "samples holding each label:")
    print("samples: " + ", ".join(f"{s} {info['num_samples']}" for s, info in manifest["splits"].items()))
    n_shards = sum(len(info["shards"]) for info in manifest["splits"].values())
    print(f"wrote {n_shards} shards and manifest.json to {out} ({len(vocab)} labels)")
    if manifest["dropped_rows"]:
        print(f"dropped {len(manifest['dropped_rows'])} row(s) of {args.input} (listed in manifest.json "
              f"'dropped_rows'):")
        for line in format_dropped(manifest["dropped_rows"]):
            print(f"  {line}")
    _print_skipped(manifest)
    return 0
