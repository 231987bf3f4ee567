"""Zero-shot CLIP (clip.model.fusion=zero_shot): logits[b, l] = logit_scale.exp() * cos(image_b, text(prompt(l))),
no head, nothing trains; through the recipe it skips the epochs (no optimizer, no engine), evaluates and exports,
and a random tiny CLIP scores near chance."""
from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from support.clip import VOCAB, caption_shards, clip_config

TOWER_KINDS = ["tiny", "tiny-open_clip"]
PROMPT = "A pathology image of {label}"


def _zero_shot_model(kind: str, prompt: str = PROMPT):
    from mmlnb_dist.recipes.clip.config import ClipModelConfig
    from mmlnb_dist.recipes.clip.model import build_model

    cfg = ClipModelConfig.model_validate({"towers": {"name": kind, "max_length": 16, "tiny": {"layers": 2}},
                                          "fusion": "zero_shot", "zero_shot_prompt": prompt})
    torch.manual_seed(0)
    return build_model(cfg, num_labels=len(VOCAB), image_size=32, classes=VOCAB)


@pytest.mark.parametrize("kind", TOWER_KINDS)
def test_zero_shot_logits_are_the_scaled_cosine_of_image_and_prompt_embeddings(kind):
    model = _zero_shot_model(kind, prompt="tissue with {label}")
    assert model.head is None and not any(p.requires_grad for p in model.parameters())
    assert model.param_groups(tower_lr=1e-5, head_lr=1e-4) == []
    torch.manual_seed(1)
    pixels = torch.randn(4, 3, 32, 32)
    inputs = model.inputs(pixels, ["ignored caption"] * 4, torch.device("cpu"))
    assert set(inputs) == {"pixel_values"}  # captions are not used: the prompts are the text side
    with torch.no_grad():
        logits = model(**inputs)
        towers = model.towers
        text = towers.encode_text(**towers.tokenize([f"tissue with {label}" for label in VOCAB]))
        image = towers.encode_image(pixels)
        by_hand = towers.logit_scale.exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
    assert logits.shape == (4, len(VOCAB))
    assert torch.allclose(logits, by_hand, atol=1e-4), (logits - by_hand).abs().max()
    assert torch.allclose(towers.logit_scale.exp(), torch.tensor(1 / 0.07), atol=1e-3)  # CLIP's initial 1/0.07


def test_a_prompt_without_the_label_placeholder_is_a_config_error():
    """Refused by the config section itself (test_clip_zero_shot_prompt_checked_early.py: at `config validate`)."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="zero_shot_prompt"):
        _zero_shot_model("tiny", prompt="A pathology image")


def val_targets(shards: Path) -> np.ndarray:
    """The validation split's multi-hot labels, read straight from the tar members (independent of the loader)."""
    manifest = json.loads((shards / "manifest.json").read_text())
    rows = []
    for entry in manifest["splits"]["val"]["shards"]:
        with tarfile.open(shards / entry["file"]) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    labels = json.loads(tar.extractfile(member).read())["labels"]
                    rows.append([float(name in labels) for name in VOCAB])
    return np.array(rows)


def chance_top3_micro_f1(targets: np.ndarray, draws: int = 2000, seed: int = 0):
    """Mean and standard deviation of sklearn's micro F1 of the top-3 prediction over random score draws."""
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        scores = rng.random(targets.shape)
        predicted = np.zeros_like(targets)
        np.put_along_axis(predicted, np.argsort(-scores, axis=1)[:, :3], 1.0, axis=1)
        values.append(f1_score(targets, predicted, average="micro", zero_division=0))
    return float(np.mean(values)), float(np.std(values))


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """200 pairs, 53 validation samples (seed 0; the multi-label stratified split)."""
    return caption_shards(tmp_path_factory.mktemp("clip-zero-shot"), n=200, size=32)


@pytest.mark.slow
@pytest.mark.parametrize("kind", TOWER_KINDS)
def test_zero_shot_through_the_recipe_trains_nothing_exports_and_a_random_model_is_near_chance(shards, tmp_path,
                                                                                               kind):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class
    from mmlnb_dist.recipes.clip.export import load_exported_model

    cfg = clip_config(shards, tmp_path, "clip.model.fusion=zero_shot", f"clip.model.towers.name={kind}",
                      "train.epochs=3")
    result = run(recipe_class("clip"), cfg)
    run_dir = Path(result["run_dir"])
    targets = val_targets(shards)
    assert result["val/num_samples"] == len(targets) == 53
    assert result["epochs_trained"] == 0 and "best_epoch" not in result
    assert not (run_dir / "checkpoints" / "epoch-0000").exists()  # nothing trained: nothing to checkpoint
    # BCE on logit_scale x cosine (sigmoids all near 1) says nothing: no `loss` in the result nor metrics.json
    written = json.loads((run_dir / "metrics.json").read_text())
    assert not [k for k in (*result, *written) if k.endswith("/loss")], sorted(result)

    # chance: sklearn's top-3 micro F1 of random scores on these 50 targets, averaged over 2000 draws
    assert targets.shape == (53, len(VOCAB))
    chance, spread = chance_top3_micro_f1(targets)
    zero_shot = result["val/micro_f1"]
    # measured (seed 0, 53 val samples, 1.70 labels each): chance 0.361 +- 0.034 (mean +- sd of the 2000 draws);
    # zero-shot of the random tiny towers: 0.361 (transformers), 0.410 (open_clip). Margin 0.1, about 3 sd.
    assert spread < 0.05, spread
    assert abs(zero_shot - chance) < 0.1, (zero_shot, chance, spread)
    assert abs(result["val/micro_auroc"] - 0.5) < 0.15, result["val/micro_auroc"]

    # the export rebuilds the zero-shot model offline: same logits as the towers it was built from
    model, meta = load_exported_model(result["export_dir"])
    assert meta["model"]["fusion"] == "zero_shot" and meta["classes"] == VOCAB
    from mmlnb_dist.core.engine import seed_everything
    from mmlnb_dist.recipes.clip.model import build_model

    seed_everything(cfg.run.seed)
    reference = build_model(cfg.clip.model, len(VOCAB), 32, classes=VOCAB).eval()
    torch.manual_seed(4)
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        got = model(**model.inputs(pixels, ["x"] * 3, torch.device("cpu")))
        want = reference(**reference.inputs(pixels, ["x"] * 3, torch.device("cpu")))
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("override, message", [
    (["clip.model.zero_shot_prompt=A pathology image"], "clip.model.zero_shot_prompt"),
    (["clip.model.image_encoder=resnet50"], "clip.model.fusion"),
])
def test_zero_shot_config_mistakes_are_named_before_work_starts(shards, tmp_path, override, message):
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    with pytest.raises(ConfigError, match=message):
        run(recipe_class("clip"), clip_config(shards, tmp_path, "clip.model.fusion=zero_shot", *override))
    assert not (tmp_path / "clip").exists()


def test_evaluating_a_zero_shot_export_reports_no_loss(shards, tmp_path):
    """`evaluate --export` of a zero-shot model printed a BCE "loss" of its scaled cosines (all sigmoids near 1:
    a large number that measures nothing, and that `train.best_metric=loss` registries compared with trained
    models' losses): left out; a trained model's export still reports its loss."""
    from mmlnb_dist.recipes.clip.evaluate import evaluate_export, format_metrics_table
    from mmlnb_dist.recipes.clip.export import export_model
    from mmlnb_dist.recipes.clip.model import build_model

    cfg = clip_config(shards, tmp_path / "runs", "clip.model.fusion=zero_shot", "clip.model.towers.tiny.layers=1",
                      "clip.model.towers.unfreeze_blocks=1")
    for fusion in ("zero_shot", "image_only"):
        model_cfg = cfg.clip.model.model_copy(update={"fusion": fusion})
        torch.manual_seed(0)
        model = build_model(model_cfg, len(VOCAB), 32, classes=VOCAB).eval()
        export = export_model(dict(model.state_dict()), model, model_cfg, VOCAB, tmp_path / fusion,
                              image_size=32, top_k=3, extra={})
        metrics, _ = evaluate_export(cfg, export, "val")
        assert ("loss" in metrics) == (fusion != "zero_shot"), sorted(metrics)
        assert ("  loss " in format_metrics_table(metrics, VOCAB, "t")) == (fusion != "zero_shot")
