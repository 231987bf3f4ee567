"""`mmlnb-dist slides`: whole-slide images to training shards (`tile`), and demo slides (`synth`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import add_config_args, classes_override, load_from_args, positive_int

# Command-line flags that are shortcuts for config keys (a flag wins over the config file and overrides).
FLAG_KEYS = {
    "mpp": "slides.mpp", "magnification": "slides.magnification", "assume_mpp": "slides.assume_mpp",
    "tile_size": "slides.tile_size", "workers": "slides.workers", "ray_address": "slides.ray_address",
    "mask_dir": "slides.mask_dir", "stain": "slides.stain.method", "stain_target": "slides.stain.target",
    "max_tiles": "slides.sampling.max_tiles_per_slide", "sampling": "slides.sampling.mode",
}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("slides", help="whole-slide images to shards (tissue mask, tile QC, stain norm)",
                            description="Tile whole-slide images (OpenSlide) into a shard set.")
    slides_sub = parser.add_subparsers(dest="slides_command", metavar="SUBCOMMAND")
    slides_sub.required = True

    tile = slides_sub.add_parser(
        "tile", help="tile slides into shards (resumable, parallel over slides)",
        description="Detect tissue, sample and QC tiles at a physical resolution, normalise stain, and write "
        "shards grouped by slide. Exit code 0: all slides tiled; 1: some slides failed or were skipped "
        "(named in the summary); 2: usage or config error. Options: `mmlnb-dist config explain` (keys slides.*).",
    )
    tile.add_argument("--slides", required=True, type=Path, help="folder of slide files, or CSV with a path column")
    tile.add_argument("--labels", required=True, type=Path, help="CSV with slide_id,label (slide_id = file stem)")
    tile.add_argument("--out", required=True, type=Path, help="shard set folder to write (staging: <out>.work/)")
    tile.add_argument("--mpp", type=float, help="tile resolution in microns per pixel (default 0.5)")
    tile.add_argument("--magnification", type=float, help="tile resolution as objective power, e.g. 20")
    tile.add_argument("--assume-mpp", type=float, help="level-0 mpp for slides without resolution metadata")
    tile.add_argument("--tile-size", type=int, help="tile side in pixels at the tile resolution")
    tile.add_argument("--sampling", choices=["grid", "random"], help="grid with overlap, or Poisson-disk random")
    tile.add_argument("--max-tiles", type=int, help="cap on kept tiles per slide")
    tile.add_argument("--stain", choices=["none", "macenko", "reinhard"], help="stain normalisation")
    tile.add_argument("--stain-target", type=Path, help="stain target image (default: see docs/slides.md)")
    tile.add_argument("--mask-dir", type=Path, help="corrected tissue masks to use: <slide_id>.geojson, <slide "
                                                    "file name>.geojson (S1.svs.geojson), or the name a tiling "
                                                    "exported in <out>/qc/masks/")
    tile.add_argument("--workers", type=int, help="slides tiled in parallel (process pool)")
    tile.add_argument("--ray-address", metavar="ADDR",
                      help="one Ray task per slide on the cluster at ADDR (auto, HOST:PORT, ray://HOST:10001), or "
                      "on a fresh local instance (local)")
    tile.add_argument("--classes", default=None, help="comma-separated class names (default: data.classes, UD,PD,D)")
    tile.add_argument("--track", action="store_true", help="log QC pictures and summary through tracking.*")
    tile.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_args(tile)
    tile.set_defaults(func=run_tile)

    synth = slides_sub.add_parser("synth", help="write small synthetic pyramidal slides and a label CSV",
                                  description="Synthetic one-class slides (tiled TIFF, 0.5 mpp) for trying "
                                  "`slides tile` without real data.")
    synth.add_argument("--out", required=True, type=Path, help="folder for <id>.tif and labels.csv")
    synth.add_argument("--per-class", type=positive_int, default=2, help="slides per class (default 2)")
    synth.add_argument("--size", type=int, default=4096, help="slide side in pixels (multiple of 256)")
    synth.add_argument("--seed", type=int, default=0, help="0 or more (default 0)")
    synth.set_defaults(func=run_synth)


def _overrides(args: argparse.Namespace) -> list:
    if args.mpp is not None and args.magnification is not None:
        from ..core.errors import UserError

        # one tile resolution: which one was meant is the user's call (--mpp was dropped silently)
        raise UserError(f"--mpp {args.mpp:g} and --magnification {args.magnification:g}: give one of them (the "
                        f"tile resolution in um/px, or as objective power)")
    extra = []
    for attr, key in FLAG_KEYS.items():
        value = getattr(args, attr, None)
        if value is not None:
            extra.append(f"{key}={value}")
    # one resolution flag clears the other key: a `slides.magnification` in the --config (or a key=value) won over
    # `--mpp` (the model's rule: mpp is ignored when magnification is set), and flags win over both (docs/slides.md)
    if args.magnification is not None:
        extra.append("slides.mpp=null")
    if args.mpp is not None:
        extra.append("slides.magnification=null")
    return extra


def run_tile(args: argparse.Namespace) -> int:
    from ..slides.report import format_table, summary_rows
    from ..slides.tiler import staging_folder, tile_slides

    args.overrides = list(args.overrides) + _overrides(args)
    if args.classes is not None:
        args.overrides.append(classes_override(args.classes))
    cfg = load_from_args(args)
    logger = checked = None
    if args.track or cfg.slides.log_to_tracking:
        from ..core.tracking import build_logger
        from ..slides.inputs import check_input_paths
        from ..slides.tiler import check_inputs

        check_input_paths(args.slides, args.labels, args.out)  # a usage error leaves no tracking run behind
        checked = check_inputs(cfg.slides, args.slides, args.labels, cfg.data.classes)  # (masks, resolution)
        logger = build_logger(cfg.tracking, cfg.run, 0, staging_folder(args.out), "slides", config=cfg)
    try:
        report = tile_slides(cfg.slides, cfg.data.build, args.slides, args.labels, args.out, classes=cfg.data.classes,
                             progress=not args.quiet, logger=logger, checked=checked)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: "interrupted" alone left the user to start over
        _say_resumable(staging_folder(args.out))
        raise
    finally:
        if logger is not None:
            logger.close()
    print(format_table(summary_rows(report.results)))
    kept = sum(r.get("kept", 0) for r in report.results)
    resumed = sum(1 for r in report.results if r.get("resumed"))
    if resumed:
        print(f"resumed: {resumed} slide(s) reused from {staging_folder(args.out)} (staged by an earlier run)")
    where = args.out if report.manifest is not None else "(no shards: no tile was kept)"
    # after a resume, this run's seconds cover only the slides tiled now: said so, with what the reused ones took
    earlier = sum(float(r.get("seconds") or 0.0) for r in report.results if r.get("resumed"))
    took = (f"{report.seconds:.1f} s this run; the {resumed} reused slide(s) took {earlier:.1f} s when tiled"
            if resumed else f"{report.seconds:.1f} s")
    print(f"{kept} tiles from {len(report.results) - len(report.problems)} slide(s) -> {where}; "
          f"QC pictures, masks and summary.csv in {report.qc_dir} ({took})")
    if report.problems:
        names = ", ".join(f"{p['slide_id']} ({p['status']})" for p in report.problems)
        print(f"{len(report.problems)} slide(s) with problems: {names}", file=sys.stderr)
    if report.manifest is None:
        # Not a success even with no slide problem: there is nothing for `train` to read.
        gone = "; the shard set an earlier run left there was removed" if report.removed_old_shards else ""
        print(f"no tile was kept from any slide: no shards written to {args.out}{gone} (why, per slide: the "
              f"error column above and {report.qc_dir}/summary.csv)", file=sys.stderr)
        return 1
    return 1 if report.problems else 0


def _say_resumable(work: Path) -> None:
    """Before the CLI's "interrupted": how many slides are staged for good, and that a rerun resumes from them."""
    import logging

    done = [p for p in (work / "slides").glob("*/result.json") if not p.parent.name.endswith(".tmp")]
    logging.getLogger(__name__).warning(
        "stopped: %d slide(s) tiled so far are kept in %s; rerun the same command to resume from them (the slides "
        "being tiled when it stopped are tiled again)", len(done), work)


def run_synth(args: argparse.Namespace) -> int:
    import re

    from ..core.errors import UserError
    from ..core.runlock import FolderLock
    from ..data.generated import refuse_foreign_files, remove_stale_files
    from ..slides.synthetic_slides import synth_slide_seed, write_synthetic_slide

    if args.size % 256 or args.size < 1024:
        raise UserError(f"--size {args.size}: must be a multiple of 256 and at least 1024")
    if args.seed < 0:  # numpy's seeding refuses it mid-slide, after --out was made (a traceback)
        raise UserError(f"--seed {args.seed}: must be 0 or more")
    # (with the `.partial` a run stopped mid-slide leaves: its own file, removed below as stale, not a foreign one
    # that made the rerun refuse the folder)
    own = re.compile(r"labels\.csv|synth-[A-Z]+-\d+\.tif(\.partial)?")
    refuse_foreign_files(args.out, own, "slides synth", "labels.csv and synth-<class>-<k>.tif")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # --out below a file, a read-only disk: one line, not a traceback
        where = err.filename or args.out
        raise UserError(f"cannot write the synthetic slides to {args.out}: {err.strerror or err} ({where}); give "
                        f"--out a folder that can be created and written") from None
    # One job per folder, as `data synth`: a second generator into it stops naming the holder, instead of
    # removing the first one's slides as stale and writing its own labels.csv over theirs.
    with FolderLock(args.out, "slides synth"):
        # an earlier run's extra slides: `slides tile` would report them as unlabelled
        remove_stale_files(args.out, own, [f"synth-{label}-{k}.tif" for label in ("UD", "PD", "D")
                                           for k in range(args.per_class)])
        rows = ["slide_id,label"]
        for c, label in enumerate(("UD", "PD", "D")):
            for k in range(args.per_class):
                sid = f"synth-{label}-{k}"
                write_synthetic_slide(args.out / f"{sid}.tif", label, width=args.size, height=args.size,
                                      seed=synth_slide_seed(args.seed, c, k))
                rows.append(f"{sid},{label}")
        (args.out / "labels.csv").write_text("\n".join(rows) + "\n")
    print(f"{len(rows) - 1} synthetic slides and labels.csv in {args.out}")
    return 0
