"""Descriptions per second: our batched, sharded `describe` vs the authors' loop (one image per `generate`
call, the whole CSV rewritten after every image), with the same model, images, prompt and decoding.

    .venv/bin/python benchmarks/describe_throughput.py --n 96 --batch-size 32 --max-new-tokens 32

Defaults run the tiny random Qwen2.5-VL on the CPU (minutes); `--vlm Qwen/Qwen2.5-VL-7B-Instruct` on a GPU
gives the real figure. Both sides decode greedily so the comparison isolates batching and I/O; pass
`--preset authors` to sample as the authors did (temperature 0.3, top_p 0.9, top_k 50, repetition 1.2).
Model loading and one-off warm-up calls are excluded from both timings. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_shards(out: Path, n: int, size: int) -> Path:
    from mmlnb_dist.data.build import build_shards as build
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.config import BuildConfig
    from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset

    src = out.parent / "src"
    make_synthetic_dataset(src, n=n, size=size, n_slides=max(6, n // 8), noisy_description_rate=0.0, seed=0)
    samples = collect_samples(src, CLASSES, descriptions=src / "descriptions.jsonl")
    build(samples, out, BuildConfig(max_samples_per_shard=n, val_fraction=0.0, image_format="png",
                                    image_size=size, group_by_slide=False), CLASSES, progress=False)
    return out


def load(cfg, vlm: str, adapter):
    """The same (merged) model both sides use."""
    from mmlnb_dist.recipes.vlm import model as V

    v = cfg.vlm
    model, proc = V.load_vlm(vlm, min_pixels=v.min_pixels, max_pixels=v.max_pixels, cache_dir=v.cache_dir)
    if adapter:
        model = V.load_adapter(model, adapter).merge_and_unload().eval()
    return model, proc


def authors_loop(cfg, vlm: str, adapter, shards: Path, csv_path: Path) -> dict:
    """One image at a time; after each, rewrite the whole CSV (their script's pattern); no resume."""
    from mmlnb_dist.data.images import image_member
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.vlm import model as V

    v = cfg.vlm
    model, proc = load(cfg, vlm, adapter)
    shard_set = ShardSet.open(shards)
    samples = [s for split in shard_set.manifest["splits"] for p, _ in shard_set.shards(split)
               for s in iter_shard_samples(p)]
    rows = []
    t0 = time.perf_counter()
    for s in samples:
        text = V.generate_descriptions(model, proc, [s[image_member(s)]], v.prompt, v.generation)[0]
        rows.append((s["__key__"], text))
        with open(csv_path, "w", newline="") as f:  # rewritten in full every time
            w = csv.writer(f)
            w.writerow(["image", "description"])
            w.writerows(rows)
    seconds = time.perf_counter() - t0
    return {"n": len(rows), "seconds": seconds, "per_s": len(rows) / seconds}


def warm_up(cfg, vlm: str, adapter, shards: Path, batch_size: int) -> None:
    """First calls of each batch shape pay one-off kernel set-up (seconds on the CPU): pay it for both sides
    before timing, so neither measurement includes it."""
    from mmlnb_dist.data.images import image_member
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.vlm import model as V

    v = cfg.vlm
    model, proc = load(cfg, vlm, adapter)
    shard_set = ShardSet.open(shards)
    path = shard_set.shards(next(iter(shard_set.manifest["splits"])))[0][0]
    images = [s[image_member(s)] for s in iter_shard_samples(path)][:batch_size]
    for batch in (images[:1], images):
        V.generate_descriptions(model, proc, batch, v.prompt, v.generation)


def ours(cfg, vlm: str, adapter, shards: Path, out: Path) -> dict:
    from mmlnb_dist.recipes.vlm.describe import run_describe

    r = run_describe(cfg, vlm, adapter, shards, out, progress=False)
    seconds = r["seconds"]  # generation only: run_describe takes the lazy model load out
    return {"n": r["num_samples"], "seconds": seconds, "per_s": r["described_now"] / seconds,
            "mean_words": round(r["quality"]["words"]["mean"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vlm", default="tiny")
    ap.add_argument("--adapter", default=None, help="a LoRA adapter (e.g. from finetune-vlm) used by both sides")
    ap.add_argument("--n", type=int, default=96, help="images")
    ap.add_argument("--size", type=int, default=112, help="image side in pixels (also the processor bound)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--preset", default="greedy", choices=["greedy", "authors"])
    args = ap.parse_args()

    from mmlnb_dist.config import load_config

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pix = args.size * args.size
        cfg = load_config(ROOT / "launch/profiles/cpu-demo.yaml", [
            f"vlm.min_pixels={pix}", f"vlm.max_pixels={pix}", f"vlm.generation.batch_size={args.batch_size}",
            f"vlm.generation.max_new_tokens={args.max_new_tokens}", f"vlm.generation.preset={args.preset}",
        ])
        shards = build_shards(tmp / "in", args.n, args.size)
        warm_up(cfg, args.vlm, args.adapter, shards, args.batch_size)
        base = authors_loop(cfg, args.vlm, args.adapter, shards, tmp / "authors.csv")
        new = ours(cfg, args.vlm, args.adapter, shards, tmp / "out")
    load = os.getloadavg()
    print(json.dumps({
        "vlm": args.vlm, "adapter": args.adapter, "mean_words": new["mean_words"], "images": args.n, "size": args.size, "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens, "preset": args.preset,
        "authors_per_s": round(base["per_s"], 2), "ours_per_s": round(new["per_s"], 2),
        "speedup": round(new["per_s"] / base["per_s"], 1), "cpu_count": os.cpu_count(),
        "loadavg_1_5_15": [round(x, 2) for x in load],
    }))


if __name__ == "__main__":
    main()
