"""CLIP recipe training throughput on the CPU: samples/s of the training epochs for each tower setting, in one run.

Same shards (the multi-label synthetic set at 64 px, built here), same batch, alternating settings `--repeats` times:
the profile's tiny random CLIP towers (transformers), tiny open_clip towers, and the small pretrained encoders
that ship on PyPI (EfficientNet-Lite0 + MiniLM, frozen) that docs/clip.md's comparison uses.

    .venv/bin/python benchmarks/clip_throughput.py [--n 300] [--epochs 2] [--repeats 2] [--out clip.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETTINGS = {
    "tiny CLIP (transformers), concat": [],
    "tiny open_clip, concat": ["clip.model.towers.name=tiny-open_clip"],
    "EfficientNet-Lite0 + MiniLM (frozen), concat": [
        "data.loader.image_size=64", "clip.model.image_encoder=efficientnet_lite0", "clip.model.text_encoder=minilm",
        "clip.model.image_encoder_trainable=[]", "clip.model.towers.unfreeze_blocks=0"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.data.config import BuildConfig, MultiLabelConfig
    from mmlnb_dist.data.multilabel import build_multilabel_shards
    from mmlnb_dist.data.synthetic_multilabel import make_multilabel_dataset
    from mmlnb_dist.recipes import recipe_class

    work = Path(tempfile.mkdtemp(prefix="clip-bench-"))
    make_multilabel_dataset(work / "src", n=args.n, size=64, n_slides=15, seed=0)
    build_multilabel_shards(work / "src" / "pairs.csv", work / "shards", BuildConfig(val_fraction=0.2, image_size=64),
                            MultiLabelConfig(), progress=False)
    rates = {name: [] for name in SETTINGS}
    for r in range(args.repeats):
        for name, overrides in SETTINGS.items():
            seen = []
            cfg = load_config("clip-multilabel", [
                f"data.shards={work / 'shards'}", f"run.output_dir={work / 'runs'}",
                f"run.name={list(SETTINGS).index(name)}-{r}", "data.loader.num_workers=0", "tracking.backends=[stdout]",
                f"train.epochs={args.epochs}", *overrides])
            run(recipe_class("clip"), cfg, report=lambda epoch, m: seen.append(m["train/samples_per_s"]))
            rates[name].append(statistics.fmean(seen))
    load = os.getloadavg()[0]
    rows = {name: {"samples_per_s": statistics.fmean(v), "runs": v} for name, v in rates.items()}
    print(f"CLIP recipe training samples/s on the CPU ({os.cpu_count()} cores, load {load:.1f}), "
          f"{args.n} samples, batch 16, mean over {args.repeats} alternating runs of {args.epochs} epochs:")
    for name, row in rows.items():
        print(f"  {name:<48} {row['samples_per_s']:8.1f}   runs {', '.join(f'{x:.1f}' for x in row['runs'])}")
    if args.out:
        Path(args.out).write_text(json.dumps({"load": load, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
