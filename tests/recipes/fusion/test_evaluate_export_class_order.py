"""`evaluate --export` on a shard set of the export's classes in another order (the same patches rebuilt with the
classes listed differently) was refused, though each sample's class is known by name. The labels are now remapped
by name to the model's logit columns: the metrics equal those on the set in the export's own order."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.data.build import build_shards
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.recipes.fusion.evaluate import _evaluate
from mmlnb_dist.recipes.fusion.model import build_classifier

from support.fusion import tiny_config
from support.shards import CLASSES, specs_for, write_patch_folder


def test_the_same_classes_in_another_order_give_the_metrics_of_the_exports_order(tmp_path):
    src = write_patch_folder(tmp_path / "src", per_class=4, size=24)
    build = BuildConfig(max_samples_per_shard=5, val_fraction=0.5, image_format="png", image_size=24)
    other_order = list(reversed(CLASSES))
    for name, classes in (("same", CLASSES), ("other", other_order)):
        build_shards(specs_for(src), tmp_path / name, build, classes, progress=False)
    torch.manual_seed(0)
    cfg = tiny_config(tmp_path / "same", tmp_path / "runs", "ev", ["data.loader.image_size=24"])
    model = build_classifier(cfg.fusion.model, len(CLASSES))
    env = DistEnv.from_environment()
    same = _evaluate(cfg, model, list(CLASSES), "val", 24, env, "tiny")
    cfg.data.shards = tmp_path / "other"
    other = _evaluate(cfg, model, list(CLASSES), "val", 24, env, "tiny")
    assert other["num_samples"] == same["num_samples"] > 0
    assert other["confusion_matrix"] == same["confusion_matrix"]
    for key in ("accuracy", "balanced_accuracy", "loss"):
        assert other[key] == pytest.approx(same[key], abs=1e-6), key
