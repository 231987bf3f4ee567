"""Evaluation without a training engine: the export and a checkpoint's consolidated fp32 weights give the
metrics training reported for its best checkpoint, and no DeepSpeed engine is built to get them."""
from __future__ import annotations

import pytest

from support.fusion import make_shards, tiny_config

SHORT = ["train.epochs=2", "fusion.curriculum.ramp_start=1", "fusion.curriculum.ramp_end=2",
         "fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false}, {start_epoch: 1}]"]


def test_export_and_checkpoint_evaluate_like_training_without_an_engine(tmp_path, monkeypatch):
    import deepspeed

    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.evaluate import evaluate_checkpoint, evaluate_export
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    shards = make_shards(tmp_path, n=90, size=64)
    cfg = tiny_config(shards, tmp_path / "runs", "ev", SHORT)
    result = run(FusionRecipe, cfg)

    def no_engine(*args, **kwargs):
        raise AssertionError("evaluation built a DeepSpeed engine")

    monkeypatch.setattr(deepspeed, "initialize", no_engine)
    from_export, classes = evaluate_export(cfg, result["export_dir"], "val")
    from_checkpoint, _ = evaluate_checkpoint(cfg, tmp_path / "runs" / "ev" / "checkpoints", "val")
    assert classes == ["UD", "PD", "D"]
    assert from_checkpoint["checkpoint_tag"] == f"epoch-{result['best_epoch']:04d}"
    for key in ("accuracy", "balanced_accuracy", "kappa", "auroc", "loss", "num_samples"):
        assert from_export[key] == pytest.approx(result[f"val/{key}"], abs=1e-6), key
        assert from_checkpoint[key] == pytest.approx(result[f"val/{key}"], abs=1e-6), key

    # the same patches without descriptions (the shard set before `describe`): a model that reads text would be
    # scored on empty strings; it is refused, naming the shard set, instead of reporting those numbers
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.config import BuildConfig

    samples = collect_samples(tmp_path / "src", classes)
    for s in samples:
        s.description = None
    bare = tmp_path / "bare"
    build_shards(samples, bare, BuildConfig(max_samples_per_shard=40, val_fraction=0.25, image_format="png",
                                            image_size=64), classes, progress=False)
    cfg.data.shards = bare
    for evaluate_model in (lambda: evaluate_export(cfg, result["export_dir"], "val"),
                           lambda: evaluate_checkpoint(cfg, tmp_path / "runs" / "ev" / "checkpoints", "val")):
        with pytest.raises(UserError, match=f"{bare} carries no descriptions"):
            evaluate_model()

    # an export whose weights are NaN (a diverged run's, or altered since) scored every patch from NaN logits,
    # argmax: the first class; refused when loaded, naming the file and the tensor
    import shutil

    from safetensors.torch import load_file, save_file

    nan_export = tmp_path / "nan-export"
    shutil.copytree(result["export_dir"], nan_export)
    weights = load_file(str(nan_export / "model.safetensors"))
    name = sorted(k for k, v in weights.items() if v.is_floating_point())[0]
    weights[name].view(-1)[0] = float("nan")
    save_file(weights, str(nan_export / "model.safetensors"))
    with pytest.raises(UserError, match=f"{nan_export / 'model.safetensors'} holds non-finite .* first {name}"):
        evaluate_export(cfg, nan_export, "val")
