"""(d) The shard loader feeding the device: uint8 batches from the workers, normalised on the device.

Synthetic shards are built in the suite's temp folder (the rtx4090 profile's build: JPEG q95 at 256 px), read
by `data.loader.build_loader` with the profile's loader settings (8 workers, capped at the CPU count, batch 32,
224 px, no augmentation, resampled to `epoch_samples`) through the fusion recipe's own preprocess with the
suite's device, as training builds it: `finalize` copies each uint8 batch to the device and normalises it there
(ImageNet mean/std). `--tiny`: 48 images at 64 px, 56 px crops, batch 8.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict

import torch

from .common import Suite


def build_shards(suite: Suite, n: int, stored_px: int):
    from mmlnb_dist.data.build import build_shards as build
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.config import BuildConfig
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset

    src, out = suite.work / "loader-src", suite.work / "loader-shards"
    make_synthetic_dataset(src, n=n, size=stored_px, n_slides=max(6, n // 8), noisy_description_rate=0.0, seed=0)
    samples = collect_samples(src, CLASSES, descriptions=src / "descriptions.jsonl")
    build(samples, out, BuildConfig(max_samples_per_shard=max(1, n // 4), val_fraction=0.0, image_format="jpeg",
                                    image_size=stored_px, jpeg_quality=95, group_by_slide=False), CLASSES,
          progress=False)
    return ShardSet.open(out)


def measure_loader(suite: Suite) -> Dict[str, Any]:
    from mmlnb_dist.config import load_config
    from mmlnb_dist.data.loader import build_loader
    from mmlnb_dist.recipes.fusion.steps import preprocess_for

    cfg = load_config("rtx4090")
    lc = cfg.data.loader
    n, stored, size, batch = (48, 64, 56, 8) if suite.tiny else (1000, cfg.data.build.image_size, lc.image_size,
                                                                 cfg.train.global_batch_size)
    workers = min(lc.num_workers, os.cpu_count() or 1)
    epoch_samples = 2 * n if suite.tiny else 4 * n
    shard_set = build_shards(suite, n, stored)
    lc = lc.model_copy(update={"num_workers": workers, "image_size": size, "augment": False,
                               "epoch_samples": epoch_samples, "shuffle_buffer": min(lc.shuffle_buffer, n)})
    preprocess = preprocess_for(shard_set.classes, size, augment=False, device=suite.device)
    loader = build_loader(shard_set, "train", preprocess, lc, rank=0, world_size=1, batch_size=batch, mode="train",
                          seed=0)
    checksum = torch.zeros((), device=suite.device)
    seen = 0
    t0 = time.perf_counter()
    for b in loader:
        x = b["image"]
        if x.device.type != torch.device(suite.device).type or x.dtype != torch.float32:
            raise RuntimeError(f"the loader gave {x.dtype} batches on {x.device}, not float32 on {suite.device}")
        checksum += x[:, :, 0, 0].sum()  # keeps the device work from being skipped; synchronised below
        seen += x.shape[0]
    suite.sync()
    seconds = time.perf_counter() - t0
    if not torch.isfinite(checksum):
        raise RuntimeError("normalised batches are not finite")
    return {"samples_per_s": round(seen / seconds, 1), "samples": seen, "batch": batch, "workers": workers,
            "stored_px": stored, "image_px": size, "load_1min": round(os.getloadavg()[0], 2)}


def add_rows(suite: Suite) -> None:
    suite.run_row("loader", "shard loader -> device normalise", lambda: measure_loader(suite))
