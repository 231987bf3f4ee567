"""`mmlnb-dist shards build|verify`: write WebDataset shards from patches, and check them."""
from __future__ import annotations

import argparse

from . import add_config_args, load_from_args


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
        "only when complete; the same inputs and seed give byte-identical shards.",
        epilog="examples:\n  mmlnb-dist shards build --input shards/demo-src --out shards/demo\n"
        "  mmlnb-dist shards build --input patches.csv --out shards/mine data.build.val_fraction=0.15 "
        "data.build.image_format=original",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("--input", "-i", required=True, metavar="PATH", help="folder of class subfolders, or CSV manifest")
    build.add_argument("--descriptions", metavar="JSONL", help="descriptions JSONL ({'file', 'description'} per line)")
    build.add_argument("--out", "-o", metavar="DIR", help="output shard folder (default: data.shards)")
    build.add_argument("--classes", default=None,
                       help="comma-separated class names, in index order (default: data.classes, UD,PD,D)")
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
    verify.add_argument("shard_dir", metavar="DIR", help="shard set folder (holds manifest.json)")
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    verify.set_defaults(func=_verify)


def _build(args: argparse.Namespace) -> int:
    from ..core.errors import UserError
    from ..data.build import build_shards
    from ..data.collect import collect_samples
    from ..data.verify import VerifyReport

    if args.classes is not None:
        args.overrides = list(args.overrides) + [f"data.classes=[{args.classes}]"]
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
    if manifest["skipped"]:
        print(f"skipped {len(manifest['skipped'])} unreadable images (listed in manifest.json 'skipped'):")
        for s in manifest["skipped"]:
            print(f"  {s['source']}  {s['reason']}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..data.verify import verify_shards

    report = verify_shards(args.shard_dir, progress=not args.no_progress)
    print(report.table())
    if report.ok:
        print(f"ok: {args.shard_dir}")
        return 0
    print(f"{len(report.problems)} problem(s):")
    for line in report.problems:
        print(f"  {line}")
    return 1
