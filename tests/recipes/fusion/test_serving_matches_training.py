"""What a served model predicts equals what training measured: the registered pyfunc model and the pipeline's
evaluate stage decode an image the way the training loader does. The loader decodes a JPEG stored larger than the
training size with DCT scaling (`Image.draft`); a full decode + resize gives other pixels, and on the demo that
skew took the reported test balanced accuracy from 96.7% (training's own evaluation) to 79.2%."""
from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from support.fusion import tiny_config

SHORT = ["train.epochs=2", "fusion.curriculum.ramp_start=1", "fusion.curriculum.ramp_end=2",
         "fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false}, {start_epoch: 1}]",
         "data.loader.image_size=32"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from mmlnb_dist.config import BuildConfig
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    root = tmp_path_factory.mktemp("serving")
    make_synthetic_dataset(root / "src", n=90, size=64, n_slides=9, noisy_description_rate=0.2, seed=0)
    # JPEG stored at 64 px, trained at 32 px: the loader decodes at half size in the DCT domain
    build = BuildConfig(max_samples_per_shard=40, val_fraction=0.3, test_fraction=0.0, image_format="jpeg",
                        image_size=64, seed=0)
    build_shards(collect_samples(root / "src", CLASSES), root / "shards", build, CLASSES, progress=False)
    cfg = tiny_config(root / "shards", root / "runs", "serve", SHORT)
    return cfg, run(FusionRecipe, cfg), root


def _val_rows(shards):
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet

    ss = ShardSet.open(shards)
    return [s for path, _ in ss.shards("val") for s in iter_shard_samples(path)]


def test_the_served_model_sees_the_pixels_the_loader_gives_training(trained):
    import pandas as pd

    from mmlnb_dist.data.images import image_member
    from mmlnb_dist.data.preprocess import ImageSamplePreprocess
    from mmlnb_dist.recipes.fusion.pyfunc_model import MMLNBClassifier, load_predictor

    cfg, result, root = trained
    rows = _val_rows(root / "shards")
    served = MMLNBClassifier()
    served.predictor = load_predictor(result["export_dir"], device="cpu")
    frame = pd.DataFrame({"image": [base64.b64encode(s[image_member(s)]).decode() for s in rows],
                          "description": [s["txt"].decode() for s in rows]})
    out = served.predict(None, frame)
    probs = torch.tensor(out[[f"prob_{c}" for c in ("UD", "PD", "D")]].to_numpy())
    # the same export model on the pixels the training loader's evaluation decodes (no augmentation)
    lc = cfg.data.loader
    served_transform = served.predictor.transform
    loader_side = ImageSamplePreprocess(lc.image_size, None, augment=False,
                                        mean=served_transform.mean.flatten().tolist(),
                                        std=served_transform.std.flatten().tolist())
    pixels = loader_side.transform.normalise_batch(torch.from_numpy(np.stack(
        [loader_side.decode(s, ctx=None)["image"] for s in rows])))
    model = served.predictor.model
    tokens = model.text_encoder.tokenize([s["txt"].decode() for s in rows])
    with torch.no_grad():
        expected = torch.softmax(model(pixel_values=pixels, **tokens)["logits"].double(), -1)
    worst = float((probs - expected).abs().max())
    assert worst < 1e-5, worst


def test_the_pipeline_evaluate_stage_reports_the_metrics_training_measured(trained):
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.pipeline.finish import evaluate_fusion_export

    cfg, result, root = trained
    evaluated = evaluate_fusion_export(cfg, result["export_dir"], root / "shards", DistEnv())
    for key in ("balanced_accuracy", "accuracy", "auroc", "kappa"):
        assert evaluated["patch"]["val"][key] == pytest.approx(result[f"val/{key}"], abs=1e-4), key
    assert np.isfinite(evaluated["patch"]["val"]["auroc"])
