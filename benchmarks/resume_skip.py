"""A mid-epoch resume in the same layout: the time to reach the first new batch, and the resumed epoch's time.

The resumed loader drops the batches trained on before the checkpoint. Since 2026-12-02 it reads their samples
without decoding them (only bad samples in that stretch are decoded again, for the ledger). The "decoded" side
withholds the checkpoint's positions from the workers, so they decode the dropped stretch as before (they still
skip collating it, which the old code did not: the old cost was a little higher). Real H&E: the 2,000 JPEGs at
512 px of `data_throughput.py --peers` (built here when absent), batch 32, 2 workers, 224 px, stopped half-way.

    .venv/bin/python benchmarks/resume_skip.py [--rounds 3] [--stop 0.5]
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _loader(shards: Path, workers: int, batch: int):
    from mmlnb_dist.data.config import LoaderConfig
    from mmlnb_dist.data.loader import build_loader
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.fusion.steps import preprocess_for

    shard_set = ShardSet.open(shards)
    ld = build_loader(shard_set, "train", preprocess_for(shard_set.classes, 224, augment=False),
                      LoaderConfig(num_workers=workers, image_size=224, augment=False, shuffle_buffer=500),
                      rank=0, world_size=1, batch_size=batch, mode="train", seed=0)
    ld.set_epoch(1)
    return ld


def checkpoint_position(shards: Path, workers: int, batch: int, stop: float):
    """The data position a checkpoint records after `stop` of the epoch's batches."""
    from mmlnb_dist.data.position import DataPosition

    ld = _loader(shards, workers, batch)
    taken = int(len(ld) * stop)
    for _ in itertools.islice(iter(ld), taken):
        pass
    part = ld.data_position()
    return DataPosition(epoch=1, step_in_epoch=taken, world_size=1, num_workers=workers, micro_batch=batch,
                        accumulation=1, epoch_positions=part["epoch_positions"], consumed=part["consumed"],
                        batches=part["batches"], before_redeal=None), taken


def resumed_epoch(shards: Path, workers: int, batch: int, position, decode_skipped: bool):
    """(seconds to the first new batch, seconds for the rest of the epoch, batches)."""
    ld = _loader(shards, workers, batch)
    ld.resume_from(position)
    if decode_skipped:
        make = ld._dataset  # benchmark-only: the same stream without the checkpoint's positions

        def without_positions():
            stream = make()
            stream.expect = {}
            return stream
        ld._dataset = without_positions
    t = time.perf_counter()
    it = iter(ld)
    next(it)
    first = time.perf_counter() - t
    n = 1 + sum(1 for _ in it)
    return first, time.perf_counter() - t, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "_work" / "data")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stop", type=float, default=0.5, help="share of the epoch's batches before the checkpoint")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    shards = args.work / "shards-he-original"
    if not (shards / "manifest.json").is_file():
        from data_throughput import make_he_source

        from mmlnb_dist.data.build import build_shards
        from mmlnb_dist.data.collect import collect_samples
        from mmlnb_dist.data.config import BuildConfig
        from mmlnb_dist.data.synthetic import CLASSES

        build_shards(collect_samples(make_he_source(args.work, args.n), CLASSES), shards,
                     BuildConfig(val_fraction=0.0, image_format="original"), CLASSES, progress=False)
    position, taken = checkpoint_position(shards, args.workers, args.batch, args.stop)
    load = os.getloadavg()[0]
    best = {}
    for _ in range(args.rounds):  # alternating, best of rounds
        for decode in (True, False):
            first, total, n = resumed_epoch(shards, args.workers, args.batch, position, decode)
            prev = best.get(decode)
            best[decode] = (min(first, prev[0]) if prev else first, min(total, prev[1]) if prev else total, n)
    print(f"{taken} of {taken + best[False][2]} batches trained before the checkpoint; batch {args.batch}, "
          f"{args.workers} workers, {os.cpu_count()} cores, load average {load:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after; best of {args.rounds}")
    print("| resumed loader | first new batch (s) | rest of the epoch (s) |\n|---|---|---|")
    for decode, label in ((True, "dropped batches decoded (before)"), (False, "dropped batches read only (now)")):
        first, total, _ = best[decode]
        print(f"| {label} | {first:.2f} | {total:.2f} |")


if __name__ == "__main__":
    main()
