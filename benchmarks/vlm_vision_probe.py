"""How well the tiny VLM's frozen vision tower (random, or the distilled stand-in) tells the classes apart.

A logistic-regression probe on the merged image tokens (what the language model receives), fitted on the train
split and scored on the test split of a shard set. It bounds what LoRA fine-tuning can reach while the tower stays
frozen: on the cpu-demo set (2026-12-03) the fine-tuned demo VLM names the class about as often as this probe reads
it (docs/vlm.md, "Where the ceiling lies"). Build the demo's shards first (`mmlnb-dist demo --until shards`).

    .venv/bin/python benchmarks/vlm_vision_probe.py --shards shards/demo --sizes 56 84 112 [--tiny-seed 0] \
        [--tiny-vision distilled]

`--tiny-vision distilled` probes the pretrained stand-in the cpu-demo profile uses since 2026-12-03
(`vlm.tiny_vision`, recipes/vlm/tiny_vision.py): 1.00 / 0.99 / 0.99 at 84 px against 0.82 / 0.78 / 0.78.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import List, Tuple

import numpy as np


def _split(shards: Path, split: str) -> Tuple[list, np.ndarray]:
    from PIL import Image

    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet

    images, labels = [], []
    for tar, _ in ShardSet.open(shards).shards(split):
        for sample in iter_shard_samples(tar):
            ext = next(e for e in ("jpg", "png") if e in sample)
            images.append(Image.open(io.BytesIO(sample[ext])).convert("RGB"))
            labels.append(int(sample["cls"]))
    return images, np.asarray(labels)


def merged_tokens(model, processor, images: list, batch: int = 32) -> np.ndarray:
    """The merged image tokens the language model receives (the model's own `get_image_features`), one flattened
    row per image: `[len(images), tokens * hidden]`."""
    import torch

    from mmlnb_dist.recipes.vlm.tiny_vision import image_tokens

    out = []
    for i in range(0, len(images), batch):
        chunk = images[i:i + batch]
        enc = processor.image_processor(images=chunk, return_tensors="pt")
        with torch.no_grad():
            tokens = image_tokens(model, enc["pixel_values"], enc["image_grid_thw"], len(chunk))
        out.append(tokens.reshape(len(chunk), -1).numpy())
    return np.concatenate(out)


def main(argv: List[str] = None) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from mmlnb_dist.recipes.vlm.model import load_vlm, resolve_model_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=Path, default=Path("shards/demo"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[56, 84, 112], help="square input sizes in pixels")
    ap.add_argument("--tiny-seed", type=int, default=0)
    ap.add_argument("--tiny-vision", choices=["random", "distilled"], default="random",
                    help="the tiny model's vision tower (vlm.tiny_vision)")
    ap.add_argument("--cache-dir", type=Path, default=None, help="where the tiny model is built (vlm.cache_dir)")
    args = ap.parse_args(argv)
    train, test = _split(args.shards, "train"), _split(args.shards, "test")
    path = resolve_model_path("tiny", args.tiny_seed, args.cache_dir, args.tiny_vision)
    print("| input px | image tokens | probe test accuracy at C 0.01 / 0.1 / 1 |\n|---|---|---|")
    for size in args.sizes:
        model, processor = load_vlm(path, min_pixels=size * size, max_pixels=size * size)
        x_train, x_test = merged_tokens(model, processor, train[0]), merged_tokens(model, processor, test[0])
        scaler = StandardScaler().fit(x_train)
        scores = [LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(x_train), train[1])
                  .score(scaler.transform(x_test), test[1]) for c in (0.01, 0.1, 1.0)]
        tokens = x_train.shape[1] // model.config.text_config.hidden_size
        print(f"| {size} | {tokens} | {' / '.join(f'{s:.3f}' for s in scores)} |", flush=True)


if __name__ == "__main__":
    main()
