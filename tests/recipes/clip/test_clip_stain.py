"""`data.loader.stain` reaches the CLIP recipe's training images. The CLIP loader was built without it, so
`data.loader.stain.kind=hed` trained a CLIP model on unjittered images without a word, while the same setting
jittered the fusion recipe's. Now both recipes jitter training images (and only those) the same way."""
from __future__ import annotations

import numpy as np
import pytest

from support.clip import caption_shards, clip_config


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return caption_shards(tmp_path_factory.mktemp("clip-stain"), n=24, size=32)


def _first_batches(shards, out, *extra):
    """The first training batch and the first validation batch of a set-up CLIP recipe."""
    from mmlnb_dist.core.distributed import DistEnv, init_engine_process_group
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    cfg = clip_config(shards, out, "data.loader.augment=true", "data.loader.shuffle_buffer=0", *extra)
    env = DistEnv.from_environment()
    init_engine_process_group(env, cfg.distributed)
    recipe = ClipRecipe(cfg, env)
    recipe.setup()
    try:
        recipe.train_loader.set_epoch(0)
        train = next(iter(recipe.train_loader))
        val = next(iter(recipe.eval_loaders["val"]))
    finally:
        recipe.cleanup()
    return train, val


def test_hed_stain_jitter_changes_the_clip_training_images_and_only_those(shards, tmp_path):
    plain_train, plain_val = _first_batches(shards, tmp_path / "plain")
    hed_train, hed_val = _first_batches(shards, tmp_path / "hed", "data.loader.stain.kind=hed",
                                        "data.loader.stain.sigma=0.3")
    assert list(plain_train["key"]) == list(hed_train["key"])  # the same samples, the same flips and rotations
    diff = (plain_train["image"] - hed_train["image"]).abs().flatten(1).amax(1).numpy()
    assert (diff > 0.05).all(), diff  # every training image jittered
    assert list(plain_val["key"]) == list(hed_val["key"])
    np.testing.assert_array_equal(plain_val["image"].numpy(), hed_val["image"].numpy())  # evaluation untouched
