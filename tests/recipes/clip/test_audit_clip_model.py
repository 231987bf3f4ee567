"""Audit of the CLIP multi-label model (recipes/clip/model.py): the fused embedding each fusion feeds the head,
checked against the towers' own embeddings; the head's layer order; the inputs each fusion asks for; single-tower
models leaving the unused tower out of the optimizer; the label-count and prompt guards."""
from __future__ import annotations

import pytest
import torch

LAYERS = 2


def _model(fusion: str = "concat", n: int = 1, num_labels: int = 4, **more):
    from mmlnb_dist.recipes.clip.config import ClipModelConfig
    from mmlnb_dist.recipes.clip.model import build_model

    cfg = ClipModelConfig.model_validate({"towers": {"name": "tiny", "unfreeze_blocks": n, "max_length": 16,
                                                     "tiny": {"layers": LAYERS}},
                                          "fusion": fusion, "head_widths": [8], **more})
    torch.manual_seed(0)
    return build_model(cfg, num_labels=num_labels, image_size=32, classes=[f"c{i}" for i in range(num_labels)])


def _batch(model):
    torch.manual_seed(1)
    tokens = model.towers.tokenize(["a necrosis patch", "fat tissue"])
    return {"pixel_values": torch.randn(2, 3, 32, 32), **tokens}


def _features(out):
    """transformers' get_*_features: a tensor, or (newer versions) an output whose pooler_output is projected."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _head_input(model, batch):
    seen = {}
    handle = model.head[0].register_forward_hook(lambda module, args, out: seen.update(x=args[0]))
    with torch.no_grad():
        logits = model(**batch)
    handle.remove()
    return seen["x"], logits


@pytest.mark.parametrize("fusion", ["concat", "sum", "image_only", "text_only"])
def test_the_head_reads_the_fusion_of_the_towers_own_embeddings(fusion):
    """concat is [image; text] in that order, sum is image + text, a single-tower model reads its tower alone;
    the logits are the head applied to that embedding."""
    model = _model(fusion).eval()
    batch = _batch(model)
    got, logits = _head_input(model, batch)
    with torch.no_grad():
        image = _features(model.towers.clip.get_image_features(pixel_values=batch["pixel_values"]))
        text = _features(model.towers.clip.get_text_features(input_ids=batch["input_ids"],
                                                             attention_mask=batch["attention_mask"]))
        assert image.shape == text.shape == (2, model.towers.embed_dim)
        want = {"concat": torch.cat([image, text], -1), "sum": image + text, "image_only": image,
                "text_only": text}[fusion]
        assert torch.allclose(got, want, atol=1e-5)
        assert torch.allclose(logits, model.head(want), atol=1e-5)


def test_the_head_is_linear_relu_dropout_per_hidden_width_then_one_logit_per_label():
    """head_widths=[8, 5] with dropout: Linear, ReLU, Dropout(p), Linear, ReLU, Dropout(p), Linear(5, labels);
    no dropout layers when head_dropout is 0."""
    from torch import nn

    from mmlnb_dist.recipes.clip.model import mlp_head

    head = mlp_head(6, [8, 5], 3, 0.25)
    kinds = [type(m) for m in head]
    assert kinds == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.25, 0.25]
    assert (head[0].in_features, head[3].in_features, head[-1].in_features, head[-1].out_features) == (6, 8, 5, 3)
    assert [type(m) for m in mlp_head(6, [8], 3, 0.0)] == [nn.Linear, nn.ReLU, nn.Linear]
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    plain = mlp_head(6, [8], 3, 0.0).eval()
    assert torch.allclose(plain(x), plain[2](torch.relu(plain[0](x))))


@pytest.mark.parametrize("fusion, keys", [("concat", {"pixel_values", "input_ids", "attention_mask"}),
                                          ("image_only", {"pixel_values"}),
                                          ("text_only", {"input_ids", "attention_mask"})])
def test_inputs_hold_only_what_the_fusion_reads(fusion, keys):
    """A text-only model gets no pixels and an image-only model no tokens; pixels take the model's dtype."""
    model = _model(fusion)
    pixels = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    out = model.inputs(pixels, ["a fat patch", "tissue"], torch.device("cpu"))
    assert set(out) == keys
    if "pixel_values" in out:
        assert out["pixel_values"].dtype == torch.float32
    if "input_ids" in out:
        want = model.towers.tokenize(["a fat patch", "tissue"])
        assert torch.equal(out["input_ids"], want["input_ids"])
    assert model(**out).shape == (2, 4)


@pytest.mark.parametrize("fusion, unused", [("image_only", "text_blocks"), ("text_only", "image_blocks")])
def test_a_single_tower_model_trains_nothing_of_the_tower_it_never_runs(fusion, unused):
    """The unused tower's blocks are frozen and out of the optimizer; the used tower's last block trains."""
    model = _model(fusion, n=1)
    used = "image_blocks" if unused == "text_blocks" else "text_blocks"
    assert not any(p.requires_grad for p in getattr(model.towers, unused).parameters())
    assert all(p.requires_grad for p in getattr(model.towers, used)[-1].parameters())
    groups = {g["name"]: g for g in model.param_groups(tower_lr=1e-5, head_lr=1e-3)}
    in_towers = {id(p) for p in groups["towers"]["params"]}
    assert in_towers == {id(p) for p in getattr(model.towers, used)[-1].parameters()}
    assert groups["towers"]["lr"] == 1e-5 and groups["head"]["lr"] == 1e-3


def test_frozen_towers_run_without_gradients_and_trained_ones_with():
    """unfreeze_blocks=0: the fused embedding carries no graph (no activations kept); 1: it does."""
    frozen, trained = _model(n=0), _model(n=1)
    assert not frozen.embeddings(**_batch(frozen)).requires_grad
    assert trained.embeddings(**_batch(trained)).requires_grad
    for model, grad in ((frozen, False), (trained, True)):  # the towers themselves run under no_grad or not
        seen = []
        for tower in (model.towers.clip.vision_model, model.towers.clip.text_model):
            tower.register_forward_hook(lambda module, args, out: seen.append(torch.is_grad_enabled()))
        model.embeddings(**_batch(model))
        assert seen == [grad, grad]


def test_two_labels_build_and_one_label_is_refused():
    """A multi-label head needs at least 2 labels: 2 is the smallest allowed."""
    assert _model(num_labels=2).head[-1].out_features == 2
    with pytest.raises(ValueError, match="at least 2 labels"):
        _model(num_labels=1)


def test_zero_shot_prompts_fill_the_template_in_label_order_and_need_every_name():
    from mmlnb_dist.recipes.clip.model import zero_shot_prompts

    assert zero_shot_prompts("A {label} patch", ["fat", "necrosis"], 2) == ["A fat patch", "A necrosis patch"]
    with pytest.raises(ValueError, match="2 label names"):
        zero_shot_prompts("A {label} patch", ["fat"], 2)
    with pytest.raises(ValueError):
        zero_shot_prompts("A {label} patch", None, 2)


def test_zero_shot_with_an_encoder_branch_is_a_config_error():
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.config import ClipModelConfig
    from mmlnb_dist.recipes.clip.model import branch_plan

    with pytest.raises(ConfigError, match="zero_shot"):
        branch_plan(ClipModelConfig.model_validate({"fusion": "zero_shot", "image_encoder": "resnet50"}))
    plan = branch_plan(ClipModelConfig.model_validate({"fusion": "text_only", "text_encoder": "minilm"}))
    assert plan == {"clip_image": False, "clip_text": False, "encoder_image": False, "encoder_text": True}
