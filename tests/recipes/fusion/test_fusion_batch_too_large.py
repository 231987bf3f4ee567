"""A global batch whose gradient accumulation needs more micro batches than an epoch holds is a config error, said
before the run's work: it was raised at the first epoch, after the engine was built, the run folder written, the
tracking run opened and a schedule of "3 optimizer steps" announced."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes.fusion import recipe as recipe_module
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

from support.fusion import tiny_config
from support.shards import make_shard_set


def test_too_few_micro_batches_for_the_accumulation_is_refused_before_any_work(tmp_path, monkeypatch):
    shards = make_shard_set(tmp_path, per_class=4, val_fraction=0.25, size=24)
    batch = ["train.global_batch_size=64", "distributed.micro_batch_per_gpu=2", "data.loader.image_size=24"]
    cfg = tiny_config(shards, tmp_path / "runs", "r", batch)

    def no_engine(*args, **kwargs):
        raise AssertionError("the engine was built before the config error")

    monkeypatch.setattr(recipe_module, "build_engine", no_engine)
    with pytest.raises(ConfigError, match=r"train.global_batch_size: an epoch has \d+ micro batches per rank, "
                                          r"fewer than the gradient accumulation 32"):
        FusionRecipe(cfg, DistEnv()).setup()
    assert not (tmp_path / "runs" / "r" / "config.yaml").exists()
