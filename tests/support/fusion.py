"""Tiny synthetic shard sets and configs for the fusion tests (shared by tests/recipes/fusion/test_fusion_*.py)."""
from __future__ import annotations

from pathlib import Path
from typing import List

from mmlnb_dist.config import BuildConfig, Config, load_config

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"


def make_shards(root: Path, n: int = 150, size: int = 64, seed: int = 0, test_fraction: float = 0.0) -> Path:
    """`n` synthetic patches at `size` px -> shards in `root/shards` (train/val, optional test)."""
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset

    src = root / "src"
    make_synthetic_dataset(src, n=n, size=size, n_slides=12, noisy_description_rate=0.2, seed=seed)
    build = BuildConfig(max_samples_per_shard=40, val_fraction=0.25, test_fraction=test_fraction,
                        image_format="png", image_size=size, seed=seed)
    out = root / "shards"
    build_shards(collect_samples(src, CLASSES), out, build, CLASSES, progress=False)
    return out


def tiny_config(shards: Path, run_root: Path, name: str, extra: List[str] = ()) -> Config:
    """The cpu-demo profile on `shards`, stdout logging only, 0 loader workers (fast start in tests)."""
    overrides = [
        f"data.shards={shards}", f"run.output_dir={run_root}", f"run.name={name}",
        "tracking.backends=[stdout]", "data.loader.num_workers=0", "data.loader.image_size=64",
        *extra,
    ]
    return load_config(CPU_DEMO, overrides)
