"""open_clip models whose towers have no transformer blocks to unfreeze: a ResNet (`open_clip:RN50`) or timm image
tower, a Hugging Face text tower (BiomedCLIP-like `hf-hub:` models). With `unfreeze_blocks=0` they run as frozen
towers under a trained head (and as zero-shot CLIP); asking to unfreeze blocks is a ConfigError that names the
model and says why. Also the towers' token limit: the length open_clip's tokenizer pads to.

The models are tiny and random, built offline in place of the pretrained ones (`_load_pretrained` stood in for)."""
from __future__ import annotations

import pytest
import torch

CLASSES = ["fat", "necrosis", "mitoses"]
TEXT_CFG = {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}


def _resnet_clip():
    """A tiny random open_clip CLIP with open_clip's own ModifiedResNet image tower (RN50's architecture)."""
    from open_clip import CLIP, CLIPTextCfg, CLIPVisionCfg

    model_cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8,
                                                 "head_width": 8}, "text_cfg": dict(TEXT_CFG)}
    torch.manual_seed(0)
    return CLIP(16, CLIPVisionCfg(**model_cfg["vision_cfg"]), CLIPTextCfg(**model_cfg["text_cfg"])), model_cfg


def _timm_clip():
    """A tiny random open_clip CLIP whose image tower is a timm model (timm's own test-size ResNet)."""
    from open_clip import CLIP, CLIPTextCfg, CLIPVisionCfg

    model_cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "timm_model_name": "test_resnet",
                                                 "timm_model_pretrained": False, "timm_pool": "avg",
                                                 "timm_proj": "linear"}, "text_cfg": dict(TEXT_CFG)}
    torch.manual_seed(0)
    return CLIP(16, CLIPVisionCfg(**model_cfg["vision_cfg"]), CLIPTextCfg(**model_cfg["text_cfg"])), model_cfg


@pytest.fixture(params=[("open_clip:RN50", _resnet_clip), ("open_clip:timm-test_resnet", _timm_clip)],
                ids=["resnet", "timm"])
def no_vit(request, monkeypatch):
    """(name, model_cfg) of an open_clip model without a ViT image tower, built when its name is loaded."""
    from mmlnb_dist.recipes.clip import openclip_towers

    name, build = request.param
    monkeypatch.setattr(openclip_towers, "_load_pretrained", lambda _name: build())
    return name


def _model(name: str, fusion: str, unfreeze_blocks: int = 0):
    from mmlnb_dist.recipes.clip.config import ClipModelConfig
    from mmlnb_dist.recipes.clip.model import build_model

    cfg = ClipModelConfig.model_validate({"towers": {"name": name, "unfreeze_blocks": unfreeze_blocks},
                                          "fusion": fusion, "head_widths": [8]})
    torch.manual_seed(1)
    return build_model(cfg, num_labels=len(CLASSES), image_size=32, classes=CLASSES)


@pytest.mark.parametrize("fusion", ["concat", "image_only", "zero_shot"])
def test_a_model_without_vit_blocks_runs_frozen_towers_under_a_trained_head(no_vit, fusion):
    """The towers stay frozen (nothing of them in the optimizer); the head alone trains and gets gradients."""
    model = _model(no_vit, fusion)
    towers = [p for p in model.towers.parameters()]
    assert towers and not any(p.requires_grad for p in towers)
    groups = model.param_groups(tower_lr=1e-5, head_lr=1e-3)
    assert [g["name"] for g in groups] == ([] if fusion == "zero_shot" else ["head"])
    torch.manual_seed(2)
    logits = model(**model.inputs(torch.randn(2, 3, 32, 32), ["a fat patch", "tissue"], torch.device("cpu")))
    assert logits.shape == (2, len(CLASSES)) and torch.isfinite(logits).all()
    if fusion != "zero_shot":
        logits.sum().backward()
        assert all(p.grad is not None for p in model.head.parameters())
        assert all(p.grad is None for p in towers)


def test_unfreezing_blocks_of_an_image_tower_without_any_is_a_config_error_naming_the_model(no_vit):
    from mmlnb_dist.core.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"'{no_vit}' has a (ModifiedResNet|TimmModel) image tower, not a ViT: "
                                          r"its blocks cannot be unfrozen; set clip.model.towers.unfreeze_blocks=0"):
        _model(no_vit, "concat", unfreeze_blocks=1)


def test_a_frozen_resnet_model_exports_and_reloads_with_the_same_logits(tmp_path, no_vit):
    """The export (open_clip's config of the ResNet tower) rebuilds offline into the same classifier."""
    from mmlnb_dist.recipes.clip.export import export_model, load_exported_model

    model = _model(no_vit, "concat").eval()
    export_model(model.state_dict(), model, model_cfg_of(no_vit), CLASSES, tmp_path / "export", image_size=32,
                 top_k=2, extra={})
    loaded, meta = load_exported_model(tmp_path / "export")
    assert meta["towers"]["context_length"] == 77
    torch.manual_seed(3)
    pixels, texts = torch.randn(2, 3, 32, 32), ["necrosis", "a fat patch"]
    with torch.no_grad():
        want = model(**model.inputs(pixels, texts, torch.device("cpu")))
        got = loaded(**loaded.inputs(pixels, texts, torch.device("cpu")))
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def model_cfg_of(name: str):
    from mmlnb_dist.recipes.clip.config import ClipModelConfig

    return ClipModelConfig.model_validate({"towers": {"name": name, "unfreeze_blocks": 0}, "fusion": "concat",
                                           "head_widths": [8]})


class _Tokenizer:
    """A tokenizer that keeps no `context_length` (the model's is the limit)."""

    def __call__(self, texts):
        return torch.zeros(len(texts), 77, dtype=torch.long)


def test_the_token_limit_is_read_from_the_model_when_the_tokenizer_keeps_none():
    from mmlnb_dist.recipes.clip.openclip_towers import OpenClipTowers, _default_preprocess

    clip, model_cfg = _resnet_clip()
    towers = OpenClipTowers("open_clip:RN50", clip, _Tokenizer(), model_cfg, _default_preprocess(32))
    assert towers.max_length == 77


def test_a_hugging_face_text_tower_is_frozen_and_its_token_limit_is_its_tokenizers():
    """A BiomedCLIP-like model (Hugging Face text tower, here the offline MiniLM with random weights): its CLIP's
    `context_length` is the BERT's 512 positions, but its tokenizer pads to the configured 24 tokens, the limit
    the export records. With 0 blocks unfrozen it builds and runs (the text tower has no open_clip resblocks)."""
    import open_clip
    from open_clip import CLIPTextCfg, CLIPVisionCfg, CustomTextCLIP

    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.models.encoders import minilm_dir
    from mmlnb_dist.recipes.clip.config import ClipModelConfig
    from mmlnb_dist.recipes.clip.model import ClipMultiLabel
    from mmlnb_dist.recipes.clip.openclip_towers import OpenClipTowers, _default_preprocess

    folder = str(minilm_dir())
    model_cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8,
                                                 "patch_size": 8},
                 "text_cfg": {"context_length": 24, "hf_model_name": folder, "hf_tokenizer_name": folder,
                              "hf_model_pretrained": False, "hf_pooler_type": "cls_pooler", "hf_proj_type": "linear"}}
    torch.manual_seed(0)
    clip = CustomTextCLIP(16, CLIPVisionCfg(**model_cfg["vision_cfg"]), CLIPTextCfg(**model_cfg["text_cfg"]))
    tokenizer = open_clip.tokenizer.HFTokenizer(folder, context_length=24)
    towers = OpenClipTowers("hf-hub:org/biomed-like", clip, tokenizer, model_cfg, _default_preprocess(32))
    assert towers.max_length == 24 == towers.tokenize(["a fat patch"])["input_ids"].shape[1]
    towers.set_unfrozen_blocks(0)
    cfg = ClipModelConfig.model_validate({"towers": {"name": "hf-hub:org/biomed-like", "unfreeze_blocks": 0},
                                          "head_widths": [8]})
    model = ClipMultiLabel(towers, cfg, len(CLASSES), CLASSES)
    logits = model(**model.inputs(torch.randn(2, 3, 32, 32), ["a fat patch", "tissue"], torch.device("cpu")))
    assert logits.shape == (2, len(CLASSES))
    assert [g["name"] for g in model.param_groups(tower_lr=1e-5, head_lr=1e-3)] == ["head"]
    with pytest.raises(ConfigError, match="'hf-hub:org/biomed-like' has a Hugging Face text tower"):
        towers.set_unfrozen_blocks(1)


def test_zero_shot_runs_a_resnet_model_whatever_unfreeze_blocks_says(no_vit):
    """Zero-shot trains nothing: the profile's `unfreeze_blocks: 2` does not matter (nor refuse the model)."""
    model = _model(no_vit, "zero_shot", unfreeze_blocks=2)
    assert not any(p.requires_grad for p in model.parameters())
    assert model(pixel_values=torch.randn(2, 3, 32, 32)).shape == (2, len(CLASSES))


@pytest.mark.parametrize("name, says", [
    ("open_clip:RN50", r"'open_clip:RN50' has a ResNet image tower"),
    ("open_clip:convnext_base:laion400m_s13b_b51k", r"has a timm \(convnext_base\) image tower"),
    ("open_clip:roberta-ViT-B-32", r"has a Hugging Face \(roberta-base\) text tower"),
])
def test_the_config_check_refuses_unfreezing_an_open_clip_model_without_blocks_before_building_it(
        monkeypatch, tmp_path, name, says):
    """`config validate` and the pipeline's start (check_config) read open_clip's own config of the model: a
    pipeline would otherwise run its earlier stages for hours and fail when the train stage builds the towers."""
    import open_clip

    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    from support.clip import clip_config

    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: pytest.fail("the check built the model"))

    def config(*extra):
        return clip_config(tmp_path / "shards", tmp_path / "runs", f"clip.model.towers.name={name}",
                           "clip.model.towers.unfreeze_blocks=2", *extra)

    with pytest.raises(ConfigError, match=rf"{says}.*set clip.model.towers.unfreeze_blocks=0"):
        ClipRecipe.check_config(config(), world_size=1)
    for fine in (["clip.model.towers.unfreeze_blocks=0"], ["clip.model.fusion=zero_shot"]):
        ClipRecipe.check_config(config(*fine), world_size=1)
    ClipRecipe.check_config(config("clip.model.towers.name=open_clip:ViT-B-32"), world_size=1)


@pytest.mark.parametrize("fusion", ["concat", "zero_shot"])
def test_the_models_check_refuses_an_image_size_the_open_clip_model_does_not_take(monkeypatch, tmp_path, fusion):
    """open_clip's ViT does not interpolate its positions: the build refuses another size; the models' check (the
    pipeline's start, `tune` before Ray) says so from open_clip's config, before a pipeline's earlier stages run."""
    import open_clip

    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    from support.clip import clip_config

    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: pytest.fail("the check built the model"))
    cfg = clip_config(tmp_path / "shards", tmp_path / "runs", "clip.model.towers.name=open_clip:RN50x4",
                      f"clip.model.fusion={fusion}", "clip.model.towers.unfreeze_blocks=0")
    with pytest.raises(ConfigError, match=r"data.loader.image_size: 32 px, but the open_clip model "
                                          r"'open_clip:RN50x4' takes 288 px; set data.loader.image_size=288"):
        ClipRecipe.check_models(cfg)
    ClipRecipe.check_models(cfg.model_copy(update={"data": cfg.data.model_copy(update={
        "loader": cfg.data.loader.model_copy(update={"image_size": 288})})}))
