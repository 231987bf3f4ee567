"""The CLIP multi-label model: selective unfreezing (parameter by parameter), fusion shapes, head widths, the
optimizer groups and their learning rates."""
from __future__ import annotations

import re

import pytest
import torch

LAYERS = 3  # the tiny towers here: 3 blocks each, so "the last 2" differs from "all"


TOWER_KINDS = ["tiny", "tiny-open_clip"]  # a transformers CLIPModel and an open_clip CLIP, both random
BLOCKS = {"tiny": r"towers\.clip\.(vision|text)_model\.encoder\.layers\.(\d+)\.",
          "tiny-open_clip": r"towers\.clip\.(visual\.|)transformer\.resblocks\.(\d+)\."}
"""Where each tower kind keeps its transformer blocks (group 1: the tower, group 2: the block index)."""


def _model(n: int, fusion: str = "concat", towers: str = "tiny", **more):
    from mmlnb_dist.recipes.clip.config import ClipModelConfig
    from mmlnb_dist.recipes.clip.model import build_model

    cfg = ClipModelConfig.model_validate({"towers": {"name": towers, "unfreeze_blocks": n, "max_length": 16,
                                                     "tiny": {"layers": LAYERS}},
                                          "fusion": fusion, **more})
    torch.manual_seed(0)
    return build_model(cfg, num_labels=6, image_size=32, classes=[f"label {i}" for i in range(6)])


def _batch(model):
    torch.manual_seed(1)
    tokens = model.towers.tokenize(["a necrosis patch", "fat and mitoses in tissue", "tissue"])
    return {"pixel_values": torch.randn(3, 3, 32, 32), **tokens}


def _expected_trainable(name: str, n: int, kind: str = "tiny") -> bool:
    if name.startswith("head."):
        return True
    m = re.match(BLOCKS[kind], name)
    return m is not None and int(m.group(2)) >= LAYERS - n


@pytest.mark.parametrize("kind", TOWER_KINDS)
@pytest.mark.parametrize("n", [0, 1, 2])
def test_exactly_the_last_n_blocks_of_each_tower_and_the_head_get_gradients(n, kind):
    model = _model(n, towers=kind)
    model.train()
    out = model(**_batch(model))
    out.float().pow(2).mean().backward()
    found = {(m.group(1), int(m.group(2))) for name, _ in model.named_parameters()
             for m in [re.match(BLOCKS[kind], name)] if m}
    assert len({tower for tower, _ in found}) == 2 and {i for _, i in found} == set(range(LAYERS)), found
    wrong = []
    for name, p in model.named_parameters():
        expected = _expected_trainable(name, n, kind)
        got = p.grad is not None and bool(p.grad.abs().sum() > 0)
        if got != expected or p.requires_grad != expected:
            wrong.append((name, expected, got, p.requires_grad))
    assert not wrong, wrong
    # both towers have exactly n trainable blocks (not, say, 2n in one tower)
    for tower in {tower for tower, _ in found}:
        blocks = {int(m.group(2)) for name, p in model.named_parameters() if p.requires_grad
                  for m in [re.match(BLOCKS[kind], name)] if m and m.group(1) == tower}
        assert blocks == set(range(LAYERS - n, LAYERS)), (tower, blocks)


def test_optimizer_groups_hold_the_trainable_parameters_with_their_own_learning_rates():
    model = _model(2)
    groups = {g["name"]: g for g in model.param_groups(tower_lr=1e-5, head_lr=1e-4)}
    assert set(groups) == {"towers", "head"}
    assert (groups["towers"]["lr"], groups["head"]["lr"]) == (1e-5, 1e-4)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert len(grouped) == len(set(grouped)) and set(grouped) == trainable
    assert {id(p) for p in model.head.parameters()} == {id(p) for p in groups["head"]["params"]}
    # with the towers frozen there is no tower group at all (an empty group is no group)
    assert [g["name"] for g in _model(0).param_groups(tower_lr=1e-5, head_lr=1e-4)] == ["head"]


@pytest.mark.parametrize("fusion, width", [("concat", 2), ("sum", 1), ("image_only", 1), ("text_only", 1),
                                           ("prmf", 1)])
def test_fusion_feeds_the_head_with_the_right_width(fusion, width):
    model = _model(1, fusion)
    dim = model.towers.embed_dim
    assert model.head[0].in_features == width * dim
    assert model(**_batch(model)).shape == (3, 6)


def test_head_has_the_seeds_four_layers_by_default_and_configurable_widths():
    linears = [m for m in _model(0).head if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [512, 512, 512, 6]
    linears = [m for m in _model(0, head_widths=[16]).head if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [16, 6]


def test_unfreezing_more_blocks_than_a_tower_has_is_a_config_error():
    from mmlnb_dist.core.errors import ConfigError

    with pytest.raises(ConfigError, match="clip.model.towers.unfreeze_blocks"):
        _model(LAYERS + 1)


def test_positive_class_weights_enter_the_loss_as_in_the_bce_formula():
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    torch.manual_seed(2)
    logits, labels = torch.randn(5, 3), (torch.rand(5, 3) < 0.5).float()
    weights = torch.tensor([1.0, 4.0, 0.5])
    recipe = ClipRecipe.__new__(ClipRecipe)  # the loss alone: no run, no engine
    recipe.pos_weight = weights
    p = logits.sigmoid()
    by_hand = -(weights * labels * p.log() + (1 - labels) * (1 - p).log()).mean()
    assert torch.allclose(recipe._loss(logits, labels), by_hand, atol=1e-6)
    recipe.pos_weight = None
    assert torch.allclose(recipe._loss(logits, labels),
                          -(labels * p.log() + (1 - labels) * (1 - p).log()).mean(), atol=1e-6)


@pytest.mark.parametrize("kind", TOWER_KINDS)
def test_prmf_fusion_feeds_the_head_alpha_text_plus_one_minus_alpha_projected_image(kind):
    """fusion=prmf: the head reads F = alpha T + (1 - alpha) (W_p I + b_p), alpha = sigmoid(W_c [I; T] + b_c),
    computed here by hand from the towers' own embeddings; PRMF's parameters receive gradients."""
    model = _model(1, "prmf", towers=kind)
    batch = _batch(model)
    seen = {}
    model.head[0].register_forward_hook(lambda module, args, out: seen.update(head_input=args[0]))
    model.train()
    model(**batch).pow(2).mean().backward()
    with torch.no_grad():
        image = model.towers.encode_image(batch["pixel_values"])
        text = model.towers.encode_text(batch["input_ids"], batch["attention_mask"])
        conf, proj = model.fuse.confidence[0], model.fuse.proj
        alpha = torch.sigmoid(torch.cat([image, text], -1) @ conf.weight.T + conf.bias)
        by_hand = alpha * text + (1 - alpha) * (image @ proj.weight.T + proj.bias)
    assert model.head[0].in_features == model.fuse.out_dim == model.towers.embed_dim
    assert alpha.shape == (3, 1) and not torch.allclose(alpha, torch.full_like(alpha, 0.5))
    assert torch.allclose(seen["head_input"], by_hand, atol=1e-5)
    for name, p in model.fuse.named_parameters():
        assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
    groups = {g["name"]: g for g in model.param_groups(tower_lr=1e-5, head_lr=1e-4)}
    assert {id(p) for p in model.fuse.parameters()} <= {id(p) for p in groups["head"]["params"]}


@pytest.mark.parametrize("settings, expected", [
    ({}, "image: CLIP tower 'tiny', last 2 blocks train; text: CLIP tower 'tiny', last 2 blocks train; fusion concat"),
    ({"image_encoder": "efficientnet_lite0", "text_encoder": "minilm", "towers": {"unfreeze_blocks": 1}},
     "image: efficientnet_lite0, last stage trains; text: minilm, last 1 blocks train; fusion concat"),
    ({"image_encoder": "resnet50", "image_encoder_trainable": [], "fusion": "image_only"},
     "image: resnet50, frozen; text: not used; fusion image_only"),
    ({"fusion": "zero_shot"}, "image: CLIP tower 'tiny', frozen; text: CLIP tower 'tiny', frozen; fusion zero_shot"),
])
def test_the_run_log_names_the_branches_that_run_and_what_of_them_trains(settings, expected):
    """The run's first line names each branch's encoder: with pretrained encoders in place of both CLIP towers it
    used to name the unused tower ("towers 'tiny' (image efficientnet_lite0, ...)")."""
    from mmlnb_dist.recipes.clip.config import ClipModelConfig
    from mmlnb_dist.recipes.clip.model import branch_summary

    assert branch_summary(ClipModelConfig.model_validate(settings)) == expected
