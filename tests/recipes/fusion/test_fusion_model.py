"""PRMF equals a hand computation; ablations train only what they should; encoders build offline."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.recipes.fusion.config import FusionModelConfig
from mmlnb_dist.recipes.fusion.model import build_classifier
from mmlnb_dist.models.fusion_blocks import PRMF


def test_prmf_paper_form_equals_hand_computation():
    torch.manual_seed(0)
    block = PRMF(image_dim=4, text_dim=3, confidence="paper")
    I, T = torch.randn(5, 4), torch.randn(5, 3)
    W, b = block.proj.weight, block.proj.bias
    Wc, bc = block.confidence[0].weight, block.confidence[0].bias
    alpha = torch.sigmoid(torch.cat([I, T], 1) @ Wc.T + bc)          # one linear layer on [I; T]
    expect = alpha * T + (1 - alpha) * (I @ W.T + b)
    fused, got_alpha = block(I, T)
    torch.testing.assert_close(got_alpha, alpha)
    torch.testing.assert_close(fused, expect)


def test_prmf_authors_form_equals_hand_computation():
    torch.manual_seed(1)
    block = PRMF(image_dim=4, text_dim=3, confidence="authors", hidden=256)
    I, T = torch.randn(6, 4), torch.randn(6, 3)
    l1, l2 = block.confidence[0], block.confidence[2]
    assert (l1.in_features, l1.out_features, l2.out_features) == (7, 256, 1)
    alpha = torch.sigmoid(torch.relu(torch.cat([T, I], 1) @ l1.weight.T + l1.bias) @ l2.weight.T + l2.bias)
    expect = alpha * T + (1 - alpha) * block.proj(I)
    fused, got_alpha = block(I, T)
    torch.testing.assert_close(got_alpha, alpha)
    torch.testing.assert_close(fused, expect)


@pytest.mark.parametrize("form", ["paper", "authors"])
def test_alpha_is_in_unit_interval(form):
    torch.manual_seed(2)
    with torch.no_grad():
        _, alpha = PRMF(8, 6, form)(100 * torch.randn(64, 8), 100 * torch.randn(64, 6))
    assert alpha.shape == (64, 1) and float(alpha.min()) >= 0.0 and float(alpha.max()) <= 1.0


def _tiny(mode: str) -> FusionModelConfig:
    return FusionModelConfig(image_encoder={"name": "tiny", "pretrained": False},
                             text_encoder={"name": "tiny-bert", "pooling": "mean", "max_length": 16},
                             mode=mode)


def _grads(model, mode):
    torch.manual_seed(0)
    texts = ["small round blue cells", "ganglion cells and neuropil"]
    kwargs = {}
    if model.image_encoder is not None:
        kwargs["pixel_values"] = torch.randn(2, 3, 32, 32)
    if model.text_encoder is not None:
        kwargs.update(model.text_encoder.tokenize(texts))
    out = model(**kwargs)
    loss = out["logits"].sum() + (out["image_logits"].sum() if out["image_logits"] is not None else 0)
    loss.backward()
    return out


ABLATIONS = {  # mode -> (builds image encoder, builds text encoder, has alpha, has image head)
    "prmf": (True, True, True, True),
    "fixed_alpha": (True, True, True, True),
    "sum": (True, True, False, True),
    "concat": (True, True, False, True),
    "image_only": (True, False, False, False),
    "text_only": (False, True, False, False),
}


@pytest.mark.parametrize("mode", list(ABLATIONS))
def test_each_ablation_builds_and_trains_only_what_it_should(mode):
    has_img, has_txt, has_alpha, has_img_head = ABLATIONS[mode]
    model = build_classifier(_tiny(mode), num_classes=4)  # class count comes from the caller (manifest)
    assert (model.image_encoder is not None, model.text_encoder is not None) == (has_img, has_txt)
    assert (model.image_head is not None) == has_img_head
    model.set_trainable(image_encoder=True, text_encoder=True)
    out = _grads(model, mode)
    assert out["logits"].shape == (2, 4)
    assert (out["alpha"] is not None) == has_alpha
    for name, p in model.named_parameters():
        assert p.requires_grad, name
        if "pooler" in name:  # mean pooling does not use the BERT pooler
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0 or "fusion" in name and mode == "concat", name


@pytest.mark.parametrize("image_on,text_on", [(True, False), (False, False), (False, True)])
def test_frozen_encoders_get_no_gradient(image_on, text_on):
    model = build_classifier(_tiny("prmf"), num_classes=3)
    model.set_trainable(image_on, text_on)
    _grads(model, "prmf")
    for part, on in (("image_encoder.", image_on), ("text_encoder.", text_on)):
        params = [(n, p) for n, p in model.named_parameters() if n.startswith(part) and "pooler" not in n]
        assert all(p.requires_grad == on for _, p in params)
        assert all((p.grad is not None) == on for _, p in params), part
    assert model.fusion.proj.weight.grad is not None and model.head[-1].weight.grad is not None


def test_fixed_alpha_is_constant():
    model = build_classifier(FusionModelConfig(image_encoder={"name": "tiny", "pretrained": False},
                                               text_encoder={"name": "tiny-bert", "pooling": "cls", "max_length": 16},
                                               mode="fixed_alpha", fixed_alpha=0.25), 3)
    out = _grads(model, "fixed_alpha")
    assert torch.all(out["alpha"] == 0.25)


def test_efficientnet_lite0_loads_the_shipped_imagenet_weights():
    from mmlnb_dist.models.config import ImageEncoderConfig
    from mmlnb_dist.models import build_image_encoder

    enc = build_image_encoder(ImageEncoderConfig(name="efficientnet_lite0", pretrained=True)).eval()
    assert enc.out_dim == 1280
    with torch.no_grad():
        assert enc(torch.randn(1, 3, 96, 96)).shape == (1, 1280)


def test_missing_imagenet_weights_is_a_clear_error(tmp_path, monkeypatch):
    from mmlnb_dist.models.config import ImageEncoderConfig
    from mmlnb_dist.models import EncoderError, build_image_encoder

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(EncoderError, match="pretrained=false"):
        build_image_encoder(ImageEncoderConfig(name="vgg16", pretrained=True))
    assert build_image_encoder(ImageEncoderConfig(name="vgg16", pretrained=False)).out_dim == 512


def test_minilm_ships_offline():
    from mmlnb_dist.models.config import TextEncoderConfig
    from mmlnb_dist.models import build_text_encoder

    enc = build_text_encoder(TextEncoderConfig(name="minilm", pooling="mean", max_length=32)).eval()
    with torch.no_grad():
        assert enc(**enc.tokenize(["neuroblastoma"])).shape == (1, 384)
