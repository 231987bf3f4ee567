"""Small builders shared by the data tests: tiny synthetic patch folders and shard sets."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import List, Optional

import numpy as np
from PIL import Image

from mmlnb_dist.data.build import SampleSpec, build_shards
from mmlnb_dist.data.config import BuildConfig

CLASSES = ["UD", "PD", "D"]


def write_patch_folder(root: Path, per_class: int = 6, size: int = 24, classes=("UD", "PD", "D"), seed: int = 0) -> Path:
    """Random-noise PNGs in class subfolders (content does not matter for the shard mechanics)."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size + 4, 3), dtype=np.uint8)).save(root / c / f"{c}_{i:03d}.png")
    return root


def write_described_patches(root: Path, per_class: int = 4) -> Path:
    """A patch folder (`write_patch_folder`) with a `descriptions.jsonl` naming every patch by path."""
    import json

    write_patch_folder(root, per_class=per_class)
    (root / "descriptions.jsonl").write_text("".join(
        json.dumps({"file": p.relative_to(root).as_posix(), "description": f"a {p.parent.name} patch"}) + "\n"
        for p in sorted(root.rglob("*.png"))))
    return root


def specs_for(root: Path, slides_per_class: Optional[int] = None) -> List[SampleSpec]:
    """SampleSpecs of a patch folder; with `slides_per_class`, samples are dealt to slides of their class."""
    specs = []
    for c in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for i, p in enumerate(sorted((root / c).glob("*.png"))):
            slide = f"{c}-slide{i % slides_per_class}" if slides_per_class else None
            specs.append(SampleSpec(p.stem, c, p, slide_id=slide, description=f"a {c} patch number {i}"))
    return specs


def make_shard_set(tmp: Path, per_class: int = 6, max_per_shard: int = 5, val_fraction: float = 0.2,
                   test_fraction: float = 0.0, size: int = 24, **build_kw) -> Path:
    """A built shard set under `tmp/shards` (PNG re-encoded so bytes are lossless and fast)."""
    src = write_patch_folder(tmp / "src", per_class=per_class, size=size)
    build = BuildConfig(max_samples_per_shard=max_per_shard, val_fraction=val_fraction,
                        test_fraction=test_fraction, image_format="png", image_size=size, **build_kw)
    build_shards(specs_for(src), tmp / "shards", build, CLASSES, progress=False)
    return tmp / "shards"


def write_pairs_csv(root: Path, cells, texts=None, images=None) -> Path:
    """A multi-label pairs CSV (`image,text,labels`) with one 8x8 PNG per row and `cells` as its labels column;
    `texts` / `images` override a row's caption / image cell by row index (None: its own)."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, cell in enumerate(cells):
        Image.fromarray(np.full((8, 8, 3), 7 * i, np.uint8)).save(root / "img" / f"p{i}.png")
        image = (images or {}).get(i, f"img/p{i}.png")
        rows.append({"image": image, "text": (texts or {}).get(i, f"caption {i}"), "labels": cell})
    path = root / "pairs.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["image", "text", "labels"])
        writer.writeheader()
        writer.writerows(rows)
    return path


class FailingKeys:
    """A preprocess whose decode refuses the given keys (bad samples; `None`: every key) and delegates the rest;
    past `limit` decodes it fails the test (a loader that reads on for ever)."""

    def __init__(self, inner, keys, limit=None):
        self.inner, self.keys, self.limit, self.calls = inner, None if keys is None else set(keys), limit, 0

    def decode(self, raw, ctx):
        self.calls += 1
        if self.limit is not None and self.calls > self.limit:
            raise RuntimeError(f"read on for ever: {self.calls} decodes")
        if self.keys is None or raw["__key__"] in self.keys:
            raise ValueError("broken on purpose")
        return self.inner.decode(raw, ctx)

    def collate(self, samples):
        return self.inner.collate(samples)

    def finalize(self, batch):
        return self.inner.finalize(batch)


def split_of_each_patient(splits) -> dict:
    """{patient_id: split name} of `split_samples`' result, asserting no patient is in two splits."""
    where = {}
    for name, members in splits.items():
        for s in members:
            assert where.setdefault(s.meta["patient_id"], name) == name, (s.meta["patient_id"], where)
    return where
