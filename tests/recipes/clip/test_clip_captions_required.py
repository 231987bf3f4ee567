"""A multi-label shard set built without captions (a labels CSV with no caption column: no `txt` members) trained
a caption-reading CLIP model (concat, sum, prmf, text_only) on empty strings for every sample, without a word,
while the fusion recipe refuses its text branch on such shards. Refused before any work, naming the setting and
the shards; the image-only and zero-shot models (which read no caption) still train on them."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from support.clip import VOCAB, clip_config


def _build(root, caption_every: int = 0):
    """24 two-label samples as shards under `root/shards`; with `caption_every`, every such sample has a caption
    (the others none); without it, none has."""
    from mmlnb_dist.data.build import SampleSpec, build_shards
    from mmlnb_dist.data.config import BuildConfig

    rng = np.random.default_rng(0)
    specs = []
    for i in range(24):
        labels = [VOCAB[i % len(VOCAB)], VOCAB[(i + 1) % len(VOCAB)]]
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)).save(buf, format="PNG")
        caption = f"a patch of {' and '.join(labels)}" if caption_every and i % caption_every else None
        specs.append(SampleSpec(f"s{i:03d}", labels[0], buf.getvalue(), description=caption,
                                meta={"labels": labels}))
    build = BuildConfig(max_samples_per_shard=16, val_fraction=0.25, image_format="png", image_size=32, seed=0)
    build_shards(specs, root / "shards", build, VOCAB, progress=False)
    return root


@pytest.fixture(scope="module")
def captionless(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("clip-captionless"))


@pytest.mark.parametrize("fusion, refused", [("concat", True), ("text_only", True), ("image_only", False),
                                             ("zero_shot", False)])
def test_a_caption_reading_model_is_refused_on_shards_without_captions(captionless, fusion, refused):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    cfg = clip_config(captionless / "shards", captionless / f"runs-{fusion}", f"clip.model.fusion={fusion}",
                      "train.best_metric=micro_f1")
    if refused:
        with pytest.raises(ConfigError) as err:
            ClipRecipe.check(cfg, DistEnv.from_environment())
        message = str(err.value)
        assert f"clip.model.fusion={fusion}" in message and str(captionless / "shards") in message, message
        assert "caption" in message and "image_only" in message, message
    else:
        ClipRecipe.check(cfg, DistEnv.from_environment())


def test_evaluating_a_caption_reading_export_on_shards_without_captions_is_refused(captionless):
    """`evaluate --export` of a concat model on such shards scored it on empty captions: refused the same way."""
    import torch

    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.recipes.clip.evaluate import evaluate_export
    from mmlnb_dist.recipes.clip.export import export_model
    from mmlnb_dist.recipes.clip.model import build_model

    cfg = clip_config(captionless / "shards", captionless / "runs-eval", "clip.model.towers.tiny.layers=1",
                      "clip.model.towers.unfreeze_blocks=1")
    torch.manual_seed(0)
    model = build_model(cfg.clip.model, len(VOCAB), 32, classes=VOCAB).eval()
    export = export_model(dict(model.state_dict()), model, cfg.clip.model, VOCAB, captionless / "export",
                          image_size=32, top_k=2, extra={})
    with pytest.raises(UserError, match=r"clip\.model\.fusion=concat reads each sample's caption"):
        evaluate_export(cfg, export, "val")


@pytest.fixture(scope="module")
def partly_captioned(tmp_path_factory):
    """Half the samples carry a caption: the manifest's `has_descriptions` is true (some sample has one)."""
    return _build(tmp_path_factory.mktemp("clip-partly-captioned"), caption_every=2)


def test_a_caption_reading_model_is_refused_on_partly_captioned_shards(partly_captioned):
    """Half the samples without a caption trained (and scored) the text side on empty strings for them, while
    fusion refuses its partly described sets: refused, naming the setting, the splits' counts and the shards."""
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    shards = ShardSet.open(partly_captioned / "shards")
    assert shards.has_descriptions  # the set-wide flag alone does not show it
    cfg = clip_config(partly_captioned / "shards", partly_captioned / "runs", "train.best_metric=micro_f1")
    with pytest.raises(ConfigError) as err:
        ClipRecipe.check(cfg, DistEnv.from_environment())
    message = str(err.value)
    missing = shards.num_samples("train") - shards.num_described("train")
    assert "clip.model.fusion=concat" in message and f"train {missing} of {shards.num_samples('train')}" in message
    assert ".tar" in message and "image_only" in message, message
    ClipRecipe.check(clip_config(partly_captioned / "shards", partly_captioned / "runs-img",
                                 "clip.model.fusion=image_only", "train.best_metric=micro_f1"),
                     DistEnv.from_environment())


class _Manifest:
    """A shard set's caption counts, as `ShardSet` reports them: train captioned in part, val and test whole."""

    root = "/data/shards"
    has_descriptions = True
    manifest = {"splits": {"train": {}, "val": {}, "test": {}}}
    counts = {"train": (10, 16), "val": (8, 8), "test": (8, 8)}

    def num_described(self, split):
        return self.counts[split][0]

    def num_samples(self, split):
        return self.counts[split][1]

    def undescribed_shards(self, split):
        described, total = self.counts[split]
        return [(f"{split}-000000.tar", total - described)] if described < total else []


def test_only_the_evaluated_splits_need_captions():
    """`evaluate --split test` scores the test split alone: a set whose train split lacks some captions but whose
    test split has them all is scored; training on it (every split) is refused, naming the train split."""
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.config import ClipModelConfig
    from mmlnb_dist.recipes.clip.model import check_captions

    cfg = ClipModelConfig()
    check_captions(cfg, _Manifest(), splits=["test"])
    with pytest.raises(ConfigError, match=r"train 6 of 16; shards, samples without: train-000000\.tar \(6\)"):
        check_captions(cfg, _Manifest())
    with pytest.raises(ConfigError, match=r"train 6 of 16"):
        check_captions(cfg, _Manifest(), splits=["train"])
