"""`fusion.image_features`: the fusion recipe trains from `features extract` output instead of images, reaching the
metrics of training from images with the same frozen encoder, and refuses features that do not fit the run."""
from __future__ import annotations

import json
import time

import pytest

from support.fusion import make_shards, tiny_config

FROZEN = ["train.epochs=2", "fusion.curriculum.ramp_start=1", "fusion.curriculum.ramp_end=2",
          # phase 0: both encoders frozen (heads train from a feature table); phase 1: the text encoder trains
          # (batches from the loader, image features given in the batch)
          "fusion.curriculum.phases=[{start_epoch: 0, train_image_encoder: false, train_text_encoder: false},"
          " {start_epoch: 1, train_image_encoder: false}]"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("fx"), n=90, size=64)


def extract(shards, out, name="tiny", seed=0, image_size=64):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.features import extract_features
    from mmlnb_dist.models.config import ImageEncoderConfig

    return extract_features(ImageEncoderConfig(name=name, pretrained=False), shards, out, env=DistEnv(), seed=seed,
                            batch_size=16, image_size=image_size, progress=False)


@pytest.fixture(scope="module")
def features(shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("feats") / "tiny"
    extract(shards, out)
    return out


def check(cfg):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    FusionRecipe.check(cfg, DistEnv())


def test_a_phase_training_the_image_encoder_is_refused_naming_it(shards, features, tmp_path):
    from mmlnb_dist.core.errors import ConfigError

    cfg = tiny_config(shards, tmp_path, "x", [*FROZEN[:3], f"fusion.image_features={features}",
                                              "fusion.curriculum.phases=[{start_epoch: 0, train_image_encoder: "
                                              "false}, {start_epoch: 1, train_image_encoder: true}]"])
    with pytest.raises(ConfigError, match=r"fusion\.curriculum\.phases\[1\] \(start_epoch 1\) trains it"):
        check(cfg)
    cfg = tiny_config(shards, tmp_path, "x", [*FROZEN, f"fusion.image_features={features}",
                                              "data.loader.augment=true"])
    with pytest.raises(ConfigError, match="data.loader.augment=false"):
        check(cfg)


def test_features_of_another_encoder_or_transform_are_refused_naming_what_differs(shards, features, tmp_path):
    from mmlnb_dist.core.provenance import ProvenanceError

    check(tiny_config(shards, tmp_path, "ok", [*FROZEN, f"fusion.image_features={features}"]))  # fits
    other = tmp_path / "uni"
    extract(shards, other, name="uni-tiny")
    cfg = tiny_config(shards, tmp_path, "x", [*FROZEN, f"fusion.image_features={other}"])
    with pytest.raises(ProvenanceError, match=r"encoder\.name: 'uni-tiny' -> 'tiny'"):
        check(cfg)
    cfg = tiny_config(shards, tmp_path, "x", [*FROZEN, f"fusion.image_features={features}",
                                              "data.loader.image_size=32"])
    with pytest.raises(ProvenanceError, match=r"transform\.image_size: 64 -> 32"):
        check(cfg)


def test_features_from_other_weights_are_refused_before_training(shards, tmp_path):
    from mmlnb_dist.core.provenance import ProvenanceError
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    seed1 = tmp_path / "seed1"
    extract(shards, seed1, seed=1)  # the same random architecture, other weights than run.seed=0 builds
    cfg = tiny_config(shards, tmp_path / "runs", "w", [*FROZEN, f"fusion.image_features={seed1}"])
    with pytest.raises(ProvenanceError, match=r"encoder\.weights_digest: '[0-9a-f]+' -> '[0-9a-f]+'"):
        run(FusionRecipe, cfg)
    assert not (tmp_path / "runs" / "w" / "checkpoints").exists()


@pytest.mark.slow
def test_training_from_features_reaches_the_metrics_of_training_from_images(shards, features, tmp_path, capsys):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    longer = [*FROZEN, "train.epochs=5", "train.global_batch_size=8", "fusion.curriculum.ramp_end=4",
              "fusion.curriculum.phases=[{start_epoch: 0, train_image_encoder: false, train_text_encoder: false},"
              " {start_epoch: 3, train_image_encoder: false}]"]
    t0 = time.perf_counter()
    from_images = run(FusionRecipe, tiny_config(shards, tmp_path, "images", longer))
    t1 = time.perf_counter()
    from_features = run(FusionRecipe, tiny_config(shards, tmp_path, "features",
                                                  [*longer, f"fusion.image_features={features}"]))
    t2 = time.perf_counter()
    # Tolerance: the features equal the encoder's output up to float rounding of another batch size (the
    # extraction's 16 vs the recipe's eval batch), so the metrics agree to 1e-4 (counts: exactly).
    for split in ("val",):
        for key in ("accuracy", "balanced_accuracy", "kappa", "f1_weighted", "auroc", "loss", "num_samples"):
            assert from_features[f"{split}/{key}"] == pytest.approx(from_images[f"{split}/{key}"], abs=1e-4), key
    assert from_features["best_epoch"] == from_images["best_epoch"]
    meta = json.loads((tmp_path / "features" / "export" / "model_config.json").read_text())
    assert meta["image_encoder_provenance"]["name"] == "tiny"
    with capsys.disabled():
        print(f"\nfusion from images {t1 - t0:.1f}s, from extracted features {t2 - t1:.1f}s; val balanced "
              f"accuracy {from_images['val/balanced_accuracy']:.4f} vs {from_features['val/balanced_accuracy']:.4f}")
    assert from_images["val/balanced_accuracy"] > 0.34  # not a one-class model: the comparison means something
