"""Tuning overhead (issue 6): a 4-trial Ray Tune search vs 4 sequential plain `mmlnb-dist train` runs of the
same configs, on the CPU, with the frozen-feature cache hit counts.

    .venv/bin/python benchmarks/tune_overhead.py [--out /tmp/tune-bench] [--epochs 4]

Prints a Markdown table (paste it into BENCHMARKS.md under "## Tuning overhead (issue 6)").
Variants: sequential CLI runs (one fresh process each, as a user would run them); the search with FIFO (same
work as sequential: every trial runs all epochs) and with ASHA, each with trials in Ray Train TorchTrainers
(the default) and with the recipe run inside the trial process (`tune.use_ray_train=false`).

`--levers` (issue 15, item 3) measures instead, alternating for `--rounds` rounds in one run, FIFO (same work as
sequential) with: the worker group per trial as is; two trials at a time overlapping their start-ups
(`tune.max_concurrent=2`, Ray told of 4 CPUs on the 2 cores, since each trial holds one CPU for its driving
process and one for its worker); Ray Train's controller polling every 0.2 s (`tune.train_poll_interval_s`);
the trial's driving process reused (`tune.reuse_actors`); SPREAD instead of PACK placement; the worker group
kept for the whole search (`tune.worker_pool`: as is, with the trial process reused, two groups for two trials at
a time); and in the trial process: as is, reused, two at a time. It reports each trial's start-up share:
1 - (recipe seconds, from the trial result files) / (search wall / trials) for one-at-a-time searches.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "launch" / "profiles" / "cpu-demo.yaml"
LRS = [3e-3, 1e-3, 3e-4, 1e-7]


def make_shards(root: Path, n: int, size: int) -> Path:
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.config import BuildConfig
    from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset

    make_synthetic_dataset(root / "src", n=n, size=size, n_slides=12, noisy_description_rate=0.2, seed=0)
    build = BuildConfig(max_samples_per_shard=60, val_fraction=0.25, image_format="png", image_size=size)
    build_shards(collect_samples(root / "src", CLASSES), root / "shards", build, CLASSES, progress=False)
    return root / "shards"


def common(shards: Path, out: Path, epochs: int):
    return [f"data.shards={shards}", f"run.output_dir={out}", "tracking.backends=[mlflow]",
            "data.loader.num_workers=0", "data.loader.image_size=32", f"train.epochs={epochs}",
            "fusion.feature_cache=disk"]


def sequential(shards: Path, out: Path, epochs: int) -> dict:
    t0 = time.time()
    for i, lr in enumerate(LRS):
        cmd = [sys.executable, "-m", "mmlnb_dist.cli", "train", "--config", str(PROFILE),
               *common(shards, out, epochs), f"run.name=seq{i}", f"train.lr={lr}"]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caches = len(list(out.rglob("feature_cache/*.safetensors")))
    return {"wall_s": time.time() - t0, "cache_files": caches, "hits": 0, "misses": caches}


def search(shards: Path, out: Path, epochs: int, scheduler: str, space: Path, *extra: str) -> dict:
    name = scheduler + ("-inproc" if extra else "")
    cmd = [sys.executable, "-m", "mmlnb_dist.cli", "tune", "--config", str(PROFILE), "--space", str(space),
           *common(shards, out, epochs), "tune.searcher=grid", "tune.num_samples=1", f"tune.scheduler={scheduler}",
           "tune.metric=val/loss", "tune.mode=min", "tune.num_cpus=2", f"tune.name={name}", *extra]
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - t0
    summary = json.loads((out / "tune" / name / "summary.json").read_text())
    cache = summary["cache"]
    with open(out / "tune" / name / "trials.csv") as fh:
        recipe_s = [float(r["trial_seconds"]) for r in csv.DictReader(fh) if r.get("trial_seconds")]
    return {"wall_s": wall, "search_s": summary["wall_s"], "cache_files": cache["cache_files"],
            "hits": cache.get("cache/hits", 0), "misses": cache.get("cache/misses", 0),
            "stopped_early": summary["stopped_early"], "recipe_s": recipe_s, "errored": summary["errored"]}

WG = ["tune.use_ray_train=true"]  # one rank per trial runs in the trial process unless told otherwise
LEVERS = {
    "tune, FIFO, worker group per trial (as is)": ("fifo", WG),
    "+ Ray Train's controller polling every 0.2 s": ("fifo", WG + ["tune.train_poll_interval_s=0.2"]),
    "+ 2 trials at a time (max_concurrent=2, Ray told 4 CPUs)": ("fifo", WG + ["tune.max_concurrent=2",
                                                                               "tune.num_cpus=4"]),
    "+ trial's driving process reused (reuse_actors)": ("fifo", WG + ["tune.reuse_actors=true"]),
    "+ SPREAD placement instead of PACK": ("fifo", WG + ["tune.placement_strategy=SPREAD"]),
    "worker group kept for the search (worker_pool)": ("fifo", WG + ["tune.worker_pool=true"]),
    "worker group kept, trial process reused": ("fifo", WG + ["tune.worker_pool=true", "tune.reuse_actors=true"]),
    "worker group kept, 2 at a time (2 groups)": ("fifo", WG + ["tune.worker_pool=true", "tune.max_concurrent=2"]),
    "in the trial process (use_ray_train=false)": ("fifo", ["tune.use_ray_train=false"]),
    "in the trial process, reused (reuse_actors)": ("fifo", ["tune.use_ray_train=false", "tune.reuse_actors=true"]),
    "in the trial process, 2 at a time": ("fifo", ["tune.use_ray_train=false", "tune.max_concurrent=2"]),
}


def levers(shards: Path, space: Path, args) -> None:
    """Sequential and every lever variant, alternating; prints a Markdown table and JSON."""
    load = os.getloadavg()
    runs = {"sequential (4 x `mmlnb-dist train`)": []}
    runs.update({name: [] for name in LEVERS if not args.only or any(o in name for o in args.only.split(","))})
    for r in range(args.rounds):
        for i, name in enumerate(runs):
            out = args.out / f"r{r}-v{i}"
            if name.startswith("sequential"):
                res = sequential(shards, out, args.epochs)
            else:
                scheduler, extra = LEVERS[name]
                # later overrides win: the 4-CPU setting of the concurrent variant replaces common()'s 2
                res = search(shards, out, args.epochs, scheduler, space, *extra)
            res["load"] = os.getloadavg()[0]
            runs[name].append(res)
            print(f"round {r + 1} {name}: {res['wall_s']:.0f}s (load {res['load']:.2f})", flush=True)
    load_after = os.getloadavg()
    print(f"\nmachine: {os.cpu_count()}-core CPU; load average before {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}, "
          f"after {load_after[0]:.2f}/{load_after[1]:.2f}; {args.n} samples, {args.epochs} epochs, "
          f"lr grid {LRS}, FIFO\n")
    seq = [x["wall_s"] for x in runs["sequential (4 x `mmlnb-dist train`)"]]
    print("| variant | wall (s) per round | vs sequential (same round) | recipe s per trial | start-up share |")
    print("|---|---|---|---|---|")
    for name, rs in runs.items():
        walls = [x["wall_s"] for x in rs]
        ratio = ", ".join(f"{w / s:.2f}x" for w, s in zip(walls, seq))
        recipe = [t for x in rs for t in x.get("recipe_s", [])]
        per = sum(recipe) / len(recipe) if recipe else None
        serial = "2 at a time" not in name and "max_concurrent=2" not in name
        share = (", ".join(f"{1 - sum(x['recipe_s']) / x['search_s']:.0%}" for x in rs if x.get("recipe_s"))
                 if serial and recipe else "-")
        print(f"| {name} | {', '.join(f'{w:.0f}' for w in walls)} | {ratio} | "
              f"{'-' if per is None else f'{per:.1f}'} | {share} |")
    print(json.dumps({"runs": runs, "load_before": load, "load_after": load_after}, default=str))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/tune-bench"))
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--levers", action="store_true", help="issue 15 item 3: Ray's levers against sequential")
    ap.add_argument("--rounds", type=int, default=1, help="--levers: alternating rounds over all variants")
    ap.add_argument("--only", default="", help="--levers: comma-separated parts of variant names to run "
                                               "(sequential always runs)")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    shards = make_shards(args.out / "data", args.n, 48)
    space = args.out / "space.yaml"
    space.write_text("params:\n  train.lr: {grid: [" + ", ".join(str(x) for x in LRS) + "]}\n")
    if args.levers:
        return levers(shards, space, args)
    load = os.getloadavg()
    rows = {"sequential (4 x `mmlnb-dist train`)": sequential(shards, args.out / "seq", args.epochs),
            "tune, FIFO, TorchTrainer per trial": search(shards, args.out / "fifo", args.epochs, "fifo", space),
            "tune, ASHA, TorchTrainer per trial": search(shards, args.out / "asha", args.epochs, "asha", space),
            "tune, FIFO, recipe in the trial process": search(shards, args.out / "fifo-in", args.epochs, "fifo",
                                                              space, "tune.use_ray_train=false"),
            "tune, ASHA, recipe in the trial process": search(shards, args.out / "asha-in", args.epochs, "asha",
                                                              space, "tune.use_ray_train=false")}
    load_after = os.getloadavg()
    print(f"machine: {os.cpu_count()}-core CPU; load average before {load[0]:.2f}, after {load_after[0]:.2f}; "
          f"{args.n} samples, {args.epochs} epochs, lr grid {LRS}\n")
    print("| variant | wall (s) | vs sequential | cache files | cache hits | cache misses | stopped early |")
    print("|---|---|---|---|---|---|---|")
    base = rows["sequential (4 x `mmlnb-dist train`)"]["wall_s"]
    for name, r in rows.items():
        print(f"| {name} | {r['wall_s']:.0f} | {r['wall_s'] / base:.2f}x | {r['cache_files']} | {r['hits']} | "
              f"{r['misses']} | {r.get('stopped_early', '-')} |")


if __name__ == "__main__":
    main()
