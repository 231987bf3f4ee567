"""Data throughput (issue 2): folder+CSV map-style loading vs our shard stream vs bare decode.

    .venv/bin/python benchmarks/data_throughput.py [--n 2000] [--work benchmarks/_work/data]

(a) the authors' way: a map-style Dataset over a CSV, PIL open per file, torchvision Resize(224) + CenterCrop +
    ToTensor + Normalize, torch DataLoader (2 workers, batch 32, shuffle);
(b) our shard loader on the default build (JPEG re-encoded at 256 px), train mode, 2 workers, batch 32,
    augmentation off so the transforms match (a);
(c) bare decode + the same transform of the shard images in this one process: the ceiling of one worker of (b).
The source set is 2,000 synthetic 512x512 JPEG patches (200 rendered patches x their 8 flips/rotations + 2
more, so files differ but rendering stays quick). Prints samples/s and a Markdown table.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np


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


def bench_shards(shards: Path, batch: int, workers: int) -> float:
    """(b): our stream."""
    from mmlnb_dist.data.config import LoaderConfig
    from mmlnb_dist.data.loader import build_loader
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.fusion.steps import preprocess_for

    shard_set = ShardSet.open(shards)
    preprocess = preprocess_for(shard_set.classes, 224, augment=False)
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--work", type=Path, default=Path("benchmarks/_work/data"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

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
