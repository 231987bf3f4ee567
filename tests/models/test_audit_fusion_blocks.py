"""Audit of models/fusion_blocks.py: every fusion block against a hand-written torch reference of its formula in
shared/SPEC.md section 3 (PRMF in both confidence forms, and the Table 2 ablations: fixed alpha, sum, concat,
single branch), the sizes of the authors' confidence network, and the modes `build_fusion` maps to blocks.

The references read only the blocks' parameters (weights and biases); the formulas are written out here."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mmlnb_dist.models.fusion_blocks import PRMF, build_fusion

DIM_I, DIM_T, BATCH = 5, 3, 6


def _inputs(seed: int = 0):
    torch.manual_seed(seed)
    return torch.randn(BATCH, DIM_I), torch.randn(BATCH, DIM_T)


def _projected(block: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """I' = W_proj I + b (SPEC: image features to the text width)."""
    return image @ block.proj.weight.T + block.proj.bias


@pytest.mark.parametrize("confidence", ["paper", "authors"])
def test_prmf_built_by_mode_matches_the_spec_formula(confidence):
    """build_fusion('prmf') with the recipe's defaults: alpha = sigmoid(W_conf [I; T] + b_conf) (paper) or
    sigmoid(W2 relu(W1 [T; I] + b1) + b2) with 256 hidden (authors); F = alpha T + (1 - alpha) I'."""
    block = build_fusion("prmf", DIM_I, DIM_T, confidence=confidence)
    image, text = _inputs(1)
    if confidence == "paper":
        lin = block.confidence[0]
        alpha = torch.sigmoid(torch.cat([image, text], 1) @ lin.weight.T + lin.bias)
    else:
        l1, l2 = block.confidence[0], block.confidence[2]
        assert l1.out_features == 256
        alpha = torch.sigmoid(torch.relu(torch.cat([text, image], 1) @ l1.weight.T + l1.bias) @ l2.weight.T
                              + l2.bias)
    fused, got_alpha = block(image, text)
    torch.testing.assert_close(got_alpha, alpha)
    torch.testing.assert_close(fused, alpha * text + (1 - alpha) * _projected(block, image))
    assert block.out_dim == DIM_T and fused.shape == (BATCH, DIM_T)


def test_prmf_at_the_paper_s_sizes_has_the_spec_s_layers():
    """I (512, VGG16) and T (768, BERT): projection 512 -> 768; paper confidence one Linear(1280 -> 1); authors
    confidence Linear(1280 -> 256) -> ReLU -> Linear(256 -> 1) -> Sigmoid (256 hidden by default)."""
    paper, authors = PRMF(512, 768), PRMF(512, 768, "authors")
    assert (paper.proj.in_features, paper.proj.out_features) == (512, 768)
    assert [type(m) for m in paper.confidence] == [nn.Linear, nn.Sigmoid]
    assert (paper.confidence[0].in_features, paper.confidence[0].out_features) == (1280, 1)
    assert [type(m) for m in authors.confidence] == [nn.Linear, nn.ReLU, nn.Linear, nn.Sigmoid]
    assert [(m.in_features, m.out_features) for m in authors.confidence if isinstance(m, nn.Linear)] == [
        (1280, 256), (256, 1)]


def test_prmf_hidden_width_is_the_configured_one():
    assert build_fusion("prmf", DIM_I, DIM_T, confidence="authors", confidence_hidden=7).confidence[0].out_features == 7


def test_an_unknown_confidence_form_is_refused():
    with pytest.raises(ValueError, match="confidence must be 'paper' or 'authors', got 'Paper'"):
        PRMF(DIM_I, DIM_T, "Paper")


@pytest.mark.parametrize("kwargs, a", [({}, 0.5), ({"fixed_alpha": 0.2}, 0.2)])
def test_fixed_alpha_fusion_is_a_constant_weighted_sum_of_text_and_projected_image(kwargs, a):
    """F = a T + (1 - a) I' with alpha = a for every sample (a=0.5, the default: a plain average)."""
    block = build_fusion("fixed_alpha", DIM_I, DIM_T, **kwargs)
    image, text = _inputs(2)
    fused, alpha = block(image, text)
    torch.testing.assert_close(fused, a * text + (1 - a) * _projected(block, image))
    assert alpha.shape == (BATCH, 1) and torch.all(alpha == a)
    assert block.out_dim == DIM_T


def test_fixed_alpha_keeps_the_features_dtype():
    """Under bf16 features the fused features and alpha stay bf16 (a float32 alpha would promote F to float32)."""
    block = build_fusion("fixed_alpha", DIM_I, DIM_T, fixed_alpha=0.25).to(torch.bfloat16)
    image, text = (x.to(torch.bfloat16) for x in _inputs(3))
    fused, alpha = block(image, text)
    assert fused.dtype == torch.bfloat16 and alpha.dtype == torch.bfloat16


def test_sum_fusion_is_text_plus_projected_image_without_alpha():
    block = build_fusion("sum", DIM_I, DIM_T)
    image, text = _inputs(4)
    fused, alpha = block(image, text)
    torch.testing.assert_close(fused, text + _projected(block, image))
    assert alpha is None and block.out_dim == DIM_T


def test_concat_fusion_is_text_then_image():
    """F = [T; I] (the docstring's and the recipe's order; a checkpoint's head weights depend on it)."""
    block = build_fusion("concat", DIM_I, DIM_T)
    image, text = _inputs(5)
    fused, alpha = block(image, text)
    assert torch.equal(fused, torch.cat([text, image], 1))
    assert alpha is None and block.out_dim == DIM_I + DIM_T
    assert not list(block.parameters())  # nothing to train in a concatenation


def test_single_branch_blocks_pass_their_branch_through():
    image, text = _inputs(6)
    img = build_fusion("image_only", DIM_I, DIM_T)
    txt = build_fusion("text_only", DIM_I, DIM_T)
    assert img(image, None)[0] is image and img(image, None)[1] is None and img.out_dim == DIM_I
    assert txt(None, text)[0] is text and txt(None, text)[1] is None and txt.out_dim == DIM_T


def test_an_unknown_fusion_mode_is_refused_naming_it():
    with pytest.raises(ValueError, match="unknown fusion mode 'avg'"):
        build_fusion("avg", DIM_I, DIM_T)
