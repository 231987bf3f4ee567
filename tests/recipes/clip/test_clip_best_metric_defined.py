"""`train.best_metric` must be defined on the validation split the shards hold: macro AUROC needs a label with both
positives and negatives among the val samples, micro AUROC both kinds of (sample, label) pair. Undefined (NaN) at
every evaluation, no checkpoint was ever the best and the export silently held the last epoch's weights, the run
reporting no best epoch; the recipe's check refuses it now, from the manifest's val label counts, before any work
(zero-shot CLIP picks no best checkpoint: not refused)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from support.clip import clip_config


@pytest.mark.parametrize("metric, counts, n, defined", [
    ("macro_auroc", {"fat": 3, "necrosis": 0}, 3, False),  # one label everywhere, the other nowhere
    ("macro_auroc", {"fat": 3, "necrosis": 1}, 3, True),
    ("micro_auroc", {"fat": 3, "necrosis": 0}, 3, True),  # pairs of both kinds
    ("micro_auroc", {"fat": 3, "necrosis": 3}, 3, False),  # every pair positive
    ("micro_auroc", {"fat": 0, "necrosis": 0}, 3, False),
    ("micro_f1", {"fat": 3, "necrosis": 3}, 3, True),  # thresholded metrics are always defined
])
def test_an_auroc_without_both_classes_on_the_val_split_is_refused(metric, counts, n, defined):
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.metrics import check_best_metric

    if defined:
        check_best_metric(metric, counts, n)
    else:
        with pytest.raises(ConfigError, match=rf"train.best_metric: {metric} is undefined on the val split"):
            check_best_metric(metric, counts, n)


def _all_labels_shards(root: Path, n: int = 16) -> Path:
    """Every sample holds both labels: no val label has a negative."""
    from mmlnb_dist.data.build import SampleSpec, build_shards
    from mmlnb_dist.data.config import BuildConfig

    rng = np.random.default_rng(0)
    specs = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)).save(buf, format="PNG")
        specs.append(SampleSpec(f"s{i:03d}", "fat", buf.getvalue(), description="fat and necrosis",
                                meta={"labels": ["fat", "necrosis"]}))
    build = BuildConfig(max_samples_per_shard=16, val_fraction=0.25, test_fraction=0.0, image_format="png",
                        image_size=32, seed=0)
    build_shards(specs, root / "shards", build, ["fat", "necrosis"], progress=False)
    return root / "shards"


def test_the_recipe_check_refuses_it_before_the_run_folder_is_made(tmp_path):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    shards = _all_labels_shards(tmp_path)
    cfg = clip_config(shards, tmp_path / "runs", "clip.top_k=1", "train.best_metric=macro_auroc")
    with pytest.raises(ConfigError, match=r"macro_auroc is undefined on the val split \(no label has both positives "
                                          r"and negatives among its 4 samples; labels fat 4, necrosis 4\)"):
        ClipRecipe.check(cfg, DistEnv.from_environment())
    for fine in (["train.best_metric=micro_f1"], ["train.best_metric=macro_auroc", "clip.model.fusion=zero_shot"]):
        ClipRecipe.check(clip_config(shards, tmp_path / "runs", "clip.top_k=1", *fine), DistEnv.from_environment())
    assert not (tmp_path / "runs").exists()
