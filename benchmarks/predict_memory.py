"""`predict`'s peak memory on a folder of patches: a chunk at a time (256, since 2026-12-04) against every input
at once (the old way: all images decoded and sent to the model in one call), both sides in this run.

A fusion model of the cpu-demo profile (1 epoch, tiny encoders) is trained and registered once on synthetic
patches; each side then runs `predict` on `--n` new patches at `--size` px (with a descriptions file) in a
subprocess of its own, whose peak resident memory (`ru_maxrss` of the child) and wall time are reported.

    .venv/bin/python benchmarks/predict_memory.py [--n 4000] [--size 256] [--out /tmp/predict-memory]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PREDICT = """
import json, sys
from pathlib import Path
from mmlnb_dist import predict
report = predict.predict_to_file(sys.argv[2], [Path(sys.argv[3])], Path(sys.argv[4]),
                                 descriptions=Path(sys.argv[3]) / "descriptions.jsonl", tracking_uri=sys.argv[5],
                                 chunk_size=int(sys.argv[1]))
print(json.dumps({"predicted": report["predicted"]}))
"""


def trained_model(root: Path) -> tuple:
    """A registered cpu-demo fusion model (trained once in `root`): (model URI, tracking URI)."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.core.tracking.journal import recorded_run
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset
    from mmlnb_dist.recipes.fusion.pyfunc_model import register_run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    uri = f"sqlite:///{(root / 'runs' / 'mlflow.db').resolve()}"
    if not (root / "runs" / "bench" / "export").is_dir():
        make_synthetic_dataset(root / "src", n=120, size=64, n_slides=12, seed=0)
        cfg = load_config(ROOT / "launch/profiles/cpu-demo.yaml", [
            f"data.shards={root / 'shards'}", f"run.output_dir={root / 'runs'}", "run.name=bench", "train.epochs=1",
            "tracking.backends=[mlflow]", "data.loader.num_workers=0", "tracking.log_environment=false"])
        build_shards(collect_samples(root / "src", CLASSES, descriptions=root / "src" / "descriptions.jsonl"),
                     root / "shards", cfg.data.build, CLASSES, progress=False)
        run(FusionRecipe, cfg)
        register_run(recorded_run(root / "runs" / "bench")["run_id"], "bench", alias="champion", tracking_uri=uri,
                     metric="best/val/balanced_accuracy", mode="max")
    return "models:/bench@champion", uri


def side(chunk: int, model: str, patches: Path, out: Path, uri: str) -> dict:
    """One `predict` in a child process: its own peak RSS (`os.wait4`'s rusage of that child) and wall time."""
    log = out.with_suffix(".log")
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", PREDICT, str(chunk), model, str(patches), str(out), uri],
                                stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "MMLNB_PROGRESS_INTERVAL": "60"})
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = status
    if status:
        raise SystemExit(log.read_text()[-2000:])
    predicted = json.loads(log.read_text().strip().splitlines()[-1])["predicted"]
    return {"chunk": chunk, "predicted": predicted, "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", type=Path, default=Path("/tmp/predict-memory"))
    args = ap.parse_args()
    from mmlnb_dist.data.synthetic import make_synthetic_dataset

    args.out.mkdir(parents=True, exist_ok=True)
    model, uri = trained_model(args.out)
    patches = args.out / f"patches-{args.n}-{args.size}"
    if not (patches / "descriptions.jsonl").is_file():
        make_synthetic_dataset(patches, n=args.n, size=args.size, n_slides=30, seed=1)
    rows = []
    for chunk in (256, 10 ** 9):
        rows.append(side(chunk, model, patches, args.out / f"preds-{chunk}.csv", uri))
        print(json.dumps(rows[-1]), flush=True)
    print(f"| predict, {args.n} patches of {args.size} px | chunk | peak RSS (MB) | wall (s) |")
    for r in rows:
        print(f"| | {'all at once' if r['chunk'] > args.n else r['chunk']} | {r['peak_rss_mb']} | {r['seconds']} |")


if __name__ == "__main__":
    main()
