"""LitData's side of benchmarks/data_throughput.py (issue 15, item 1), run in its own process.

    python benchmarks/peers/litdata_run.py --site DIR --src SRC --out OUT [--batch 32] [--workers 2]

`--site` is a folder holding litdata and the packages it needs beyond the project's stack (installed there by
data_throughput.py with `pip install --target`); it is put on `sys.path` here only, so the project's venv
never gets litdata. `litdata.optimize` writes the source JPEG files' bytes (the same bytes our shards hold)
into LitData chunks once; then one epoch of `StreamingDataset` + `StreamingDataLoader` runs with the same
per-sample work, batch size, worker count and main-process normalisation as our loader. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _item(row):
    """litdata.optimize's fn: one source row -> the stored sample (the file's bytes, its class index)."""
    path, label = row
    return {"image": Path(path).read_bytes(), "label": label}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--site", type=Path, required=True)
    ap.add_argument("--src", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--classes", default="UD,PD,D")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    sys.path.insert(0, str(args.site))
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import litdata
    from litdata import StreamingDataLoader, optimize

    from peers.litdata_images import StreamedImages
    from peers.loaders import _collate, normaliser

    classes = args.classes.split(",")
    optimize_s = None
    if not (args.out / "index.json").is_file():
        rows = [(str(args.src / r["file"]), classes.index(r["label"]))
                for r in csv.DictReader(open(args.src / "labels.csv"))]
        t = time.perf_counter()
        optimize(fn=_item, inputs=rows, output_dir=str(args.out), chunk_bytes="64MB", num_workers=1,
                 mode="overwrite")
        optimize_s = time.perf_counter() - t

    ds = StreamedImages(str(args.out), shuffle=True, seed=0, size=args.size)
    loader = StreamingDataLoader(ds, batch_size=args.batch, num_workers=args.workers, collate_fn=_collate)
    norm = normaliser(args.size)
    t = time.perf_counter()
    n = sum(len(y) for x, y in ((norm(x), y) for x, y in loader))
    rate = n / (time.perf_counter() - t)
    print(json.dumps({"samples_per_s": rate, "n": n, "optimize_s": optimize_s, "litdata": litdata.__version__}))


if __name__ == "__main__":
    main()
