"""The seed's baselines by composition: `clip.model.image_encoder=resnet50` (image only, layer4 + head train) and
`clip.model.text_encoder=<BERT>` (text only, the last N encoder layers + head train), checked parameter by
parameter; the image normalisation follows the image branch; both train through the recipe and reload offline."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from support.clip import VOCAB, caption_shards, clip_config, export_matches_checkpoint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _model(**fields):
    from mmlnb_dist.recipes.clip.config import ClipModelConfig
    from mmlnb_dist.recipes.clip.model import build_model

    cfg = ClipModelConfig.model_validate({"head_widths": [16], **fields})
    torch.manual_seed(0)
    return build_model(cfg, num_labels=len(VOCAB), image_size=32, classes=VOCAB)


def _check_gradients(model, expected) -> None:
    wrong = []
    for name, p in model.named_parameters():
        want = expected(name)
        got = p.grad is not None and bool(p.grad.abs().sum() > 0)
        if got != want or p.requires_grad != want:
            wrong.append((name, want, got, p.requires_grad))
    assert not wrong, wrong


def test_resnet50_image_baseline_trains_exactly_layer4_and_the_head():
    model = _model(fusion="image_only", image_encoder="resnet50", image_encoder_pretrained=False)
    assert model.towers is None  # no CLIP is built for a baseline that uses none of its towers
    assert model.image_mean == IMAGENET_MEAN and model.image_std == IMAGENET_STD
    model.train()
    torch.manual_seed(1)
    model(**model.inputs(torch.randn(2, 3, 32, 32), ["a", "b"], torch.device("cpu"))).pow(2).mean().backward()
    # torchvision's ResNet-50 children: conv1 bn1 relu maxpool layer1 layer2 layer3 layer4 -> body.7 is layer4
    layer4 = re.compile(r"^image_branch\.encoder\.body\.7\.")
    _check_gradients(model, lambda name: name.startswith("head.") or bool(layer4.match(name)))
    assert sum(1 for n, _ in model.named_parameters() if layer4.match(n)) > 20
    # frozen batch norms keep their running statistics in training mode; layer4's update them
    bns = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert all(m.training == bool(layer4.match(name + ".")) for name, m in bns.items())


@pytest.mark.parametrize("n", [0, 1, 2])
def test_bert_text_baseline_trains_exactly_the_last_n_encoder_layers_and_the_head(n):
    model = _model(fusion="text_only", text_encoder="tiny-bert", towers={"unfreeze_blocks": n})
    assert model.towers is None
    model.train()
    model(**model.inputs(None, ["necrosis in a patch", "fat"], torch.device("cpu"))).pow(2).mean().backward()
    layers = model.text_branch.encoder.model.encoder.layer
    assert len(layers) == 2  # tiny-bert: 2 layers, so n = 2 is all of them and n = 1 the last
    block = re.compile(r"^text_branch\.encoder\.model\.encoder\.layer\.(\d+)\.")
    _check_gradients(model, lambda name: name.startswith("head.")
                     or bool((m := block.match(name)) and int(m.group(1)) >= len(layers) - n))


def test_image_encoder_trainable_names_other_stages_and_unknown_ones_are_config_errors():
    from mmlnb_dist.core.errors import ConfigError

    model = _model(fusion="image_only", image_encoder="resnet50", image_encoder_pretrained=False,
                   image_encoder_trainable=["layer3", "layer4"])
    trainable = {name.split(".")[3] for name, p in model.named_parameters()
                 if p.requires_grad and name.startswith("image_branch.")}
    assert trainable == {"6", "7"}
    with pytest.raises(ConfigError, match="clip.model.image_encoder_trainable"):
        _model(fusion="image_only", image_encoder="resnet50", image_encoder_pretrained=False,
               image_encoder_trainable=["layer9"])


def test_combinations_that_cannot_work_are_config_errors():
    from mmlnb_dist.core.errors import ConfigError

    with pytest.raises(ConfigError, match="clip.model.fusion"):  # sum needs equal widths: 64 vs CLIP's 32
        _model(fusion="sum", image_encoder="tiny", image_encoder_pretrained=False, towers={"tiny": {"layers": 2}})
    with pytest.raises(ConfigError, match="clip.model.fusion"):  # zero-shot is CLIP's own two towers
        _model(fusion="zero_shot", image_encoder="tiny", image_encoder_pretrained=False)
    # concat of a torchvision image encoder with CLIP's text tower works (widths add up)
    model = _model(fusion="concat", image_encoder="tiny", image_encoder_pretrained=False,
                   towers={"tiny": {"layers": 2}, "max_length": 16})
    assert model.head[0].in_features == 64 + model.towers.embed_dim
    assert model.image_mean == IMAGENET_MEAN


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return caption_shards(tmp_path_factory.mktemp("clip-baselines"), n=48, size=32)


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    ("clip.model.fusion=image_only", "clip.model.image_encoder=resnet50", "clip.model.image_encoder_pretrained=false"),
    ("clip.model.fusion=text_only", "clip.model.text_encoder=tiny-bert"),
], ids=["resnet50-image-only", "bert-text-only"])
def test_baselines_train_through_the_recipe_and_reload_offline_with_equal_logits(shards, tmp_path, overrides):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    cfg = clip_config(shards, tmp_path, "train.epochs=2", *overrides)
    result = run(recipe_class("clip"), cfg)
    assert result["val/loss"] == result["val/loss"] and result["epochs_trained"] == 2
    meta = export_matches_checkpoint(result, cfg)
    image_only = "resnet50" in overrides[1]
    mean = IMAGENET_MEAN if image_only else (0.48145466, 0.4578275, 0.40821073)
    assert meta["preprocessing"]["image_mean"] == pytest.approx(list(mean))
    assert meta["towers"] is None  # neither baseline builds a CLIP


def test_a_single_label_shard_set_is_refused_before_training(tmp_path):
    """The CLIP recipe on a shard set of one class per patch started, then stopped mid-epoch on a bad-sample rate
    ("json member has no 'labels' list"); it is refused before any work, naming the set and what to build."""
    from mmlnb_dist.core.distributed import DistEnv
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    from support.fusion import make_shards

    shards = make_shards(tmp_path, n=36, size=32)
    with pytest.raises(ConfigError) as err:
        ClipRecipe.check(clip_config(shards, tmp_path), DistEnv.from_environment())
    message = str(err.value)
    assert str(shards) in message and "single-label" in message and "--task multilabel" in message, message


def test_an_image_encoder_weights_file_is_what_the_clip_image_branch_starts_from(tmp_path):
    """`clip.model.image_encoder_weights_path`: a local state-dict file for the encoder baseline (an offline
    machine's ResNet-50); an export rebuilds without it."""
    from safetensors.torch import save_file

    from mmlnb_dist.models.config import ImageEncoderConfig
    from mmlnb_dist.models.encoders import build_image_encoder
    from mmlnb_dist.recipes.clip.model import build_model

    torch.manual_seed(7)
    body = build_image_encoder(ImageEncoderConfig(name="tiny", pretrained=False)).body
    weights = {k: v.clone() for k, v in body.state_dict().items()}
    save_file(weights, str(tmp_path / "tiny.safetensors"))
    shards = caption_shards(tmp_path / "shards", n=24)
    cfg = clip_config(shards, tmp_path, "clip.model.fusion=image_only", "clip.model.image_encoder=tiny",
                      f"clip.model.image_encoder_weights_path={tmp_path / 'tiny.safetensors'}")
    torch.manual_seed(0)  # another draw than the file's: only loading the file gives its values
    model = build_model(cfg.clip.model, len(VOCAB), 32, classes=VOCAB)
    loaded = model.image_branch.encoder.body.state_dict()
    assert [k for k in weights if not torch.equal(weights[k], loaded[k])] == []

    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    result = run(recipe_class("clip"), cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 1})}))
    export_matches_checkpoint(result, cfg)
    from mmlnb_dist.recipes.clip.export import load_exported_model

    (tmp_path / "tiny.safetensors").unlink()  # the serving machine has the export, not the training inputs
    from safetensors.torch import load_file

    reloaded = load_exported_model(result["export_dir"])[0].state_dict()
    exported = load_file(str(Path(result["export_dir"]) / "model.safetensors"))
    assert [k for k in exported if not torch.equal(exported[k], reloaded[k])] == []
