"""A multi-label shard set needs at least two labels for the clip recipe: with one, every sample is positive and
there is nothing to rank. `train` used to build the run folder and then crash in the model builder with a raw
`ValueError: need at least 2 labels, got 1`."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support.clip import clip_config


def one_label_shards(root: Path, n: int = 24) -> Path:
    """`n` captioned images, every one labelled `fat` (the only label), 25% validation."""
    from mmlnb_dist.data.build import SampleSpec, build_shards
    from mmlnb_dist.data.config import BuildConfig

    rng = np.random.default_rng(0)
    specs = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)).save(buf, format="PNG")
        specs.append(SampleSpec(f"s{i:03d}", "fat", buf.getvalue(), description="a fat patch",
                                meta={"labels": ["fat"]}))
    build = BuildConfig(max_samples_per_shard=16, val_fraction=0.25, test_fraction=0.0, image_format="png",
                        image_size=32, seed=0)
    build_shards(specs, root / "shards", build, ["fat"], progress=False)
    return root / "shards"


def test_a_one_label_shard_set_is_refused_before_the_run_folder_is_made(tmp_path):
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    shards = one_label_shards(tmp_path)
    cfg = clip_config(shards, tmp_path / "runs", "clip.top_k=1")
    with pytest.raises(ConfigError, match=r"data\.shards.*1 label.*fat"):
        run(recipe_class("clip"), cfg)
    assert not (tmp_path / "runs" / "clip").exists()
