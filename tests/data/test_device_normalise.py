"""Batches are normalised on the training device: the loader's main process copies the workers' uint8 batch there
(a quarter of the bytes of float32) and normalises it there, so it does no float work that takes CPU time from the
decoding workers (BENCHMARKS.md "Loader against peers": (b) against (b-u8)). Every recipe hands its device over."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmlnb_dist.data.preprocess import ClassIndexLabel, ImageSamplePreprocess

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _batch(seed: int = 0):
    images = np.random.default_rng(seed).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    return {"image": torch.from_numpy(images), "label": torch.tensor([0, 1, 2, 0])}


def _preprocess(device=None):
    return ImageSamplePreprocess(8, ClassIndexLabel(["a", "b", "c"]), augment=False, mean=MEAN, std=STD,
                                 device=device)


def test_finalize_normalises_on_the_device_it_is_given():
    from torchvision.transforms import Normalize

    reference = Normalize(MEAN, STD)(_batch()["image"].permute(0, 3, 1, 2).float() / 255.0)
    for device in (None, "cpu"):
        out = _preprocess(device).finalize(_batch())["image"]
        assert out.dtype == torch.float32 and out.device.type == "cpu"
        torch.testing.assert_close(out, reference, atol=2e-6, rtol=0)
    # "meta" stands in for an accelerator on this CPU-only machine: the batch is moved before normalising,
    # and the constants follow it (the same code path as cuda).
    meta = _preprocess("meta").finalize(_batch())["image"]
    assert (meta.device.type, meta.dtype, tuple(meta.shape)) == ("meta", torch.float32, (4, 3, 8, 8))


def test_the_preprocess_pickles_into_workers_with_its_device():
    import pickle

    restored = pickle.loads(pickle.dumps(_preprocess("meta")))
    assert restored.device == torch.device("meta")


@pytest.mark.parametrize("recipe", ["fusion", "clip"])
def test_recipes_hand_their_training_device_to_the_loader(tmp_path, monkeypatch, recipe):
    from mmlnb_dist.core.recipe import run

    seen = []
    original = ImageSamplePreprocess.finalize

    def recording(self, batch):
        seen.append(self.device)
        return original(self, batch)

    monkeypatch.setattr(ImageSamplePreprocess, "finalize", recording)
    if recipe == "fusion":
        from support.fusion import make_shards, tiny_config

        from mmlnb_dist.recipes.fusion.recipe import FusionRecipe as Recipe

        cfg = tiny_config(make_shards(tmp_path, n=60, size=32), tmp_path / "runs", "device",
                          ["train.epochs=1", "data.loader.image_size=32"])
    else:
        from support.clip import caption_shards, clip_config

        from mmlnb_dist.recipes.clip.recipe import ClipRecipe as Recipe

        cfg = clip_config(caption_shards(tmp_path, n=32), tmp_path / "runs", "train.epochs=1", name="device")
    run(Recipe, cfg)
    assert seen and set(seen) == {torch.device("cpu")}, seen  # the CPU run's training device
