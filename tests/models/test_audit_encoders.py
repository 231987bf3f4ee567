"""Audit of models/encoders.py: building encoders from names and weights files, their normalisation, pooling,
TF-'SAME' padding and the weights fingerprint the feature cache keys on."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmlnb_dist.models.config import ImageEncoderConfig
from mmlnb_dist.models.encoders import (EncoderError, TextEncoder, build_image_encoder, check_weights_reachable,
                                        encoder_provenance, image_normalisation, module_fingerprint)


def _tiny_state(tmp_path, seed=0):
    torch.manual_seed(seed)
    body = build_image_encoder(ImageEncoderConfig(name="tiny", pretrained=False)).body
    path = tmp_path / "tiny.pt"
    torch.save(body.state_dict(), path)
    return body.state_dict(), path


def test_weights_path_loads_the_file_and_records_its_digest_even_with_pretrained_true(tmp_path):
    """`weights_path` replaces the default weights: a 'tiny' (which has no pretrained weights) builds with
    pretrained=true, holds the file's tensors and records their digest; pretrained=false with a file too."""
    state, path = _tiny_state(tmp_path)
    for pretrained in (True, False):
        enc = build_image_encoder(ImageEncoderConfig(name="tiny", pretrained=pretrained, weights_path=str(path)))
        for key, value in enc.body.state_dict().items():
            assert torch.equal(value, state[key]), key
        assert enc.weights_digest == module_fingerprint("tiny", enc.body)


def test_a_weights_file_lacking_weights_is_refused(tmp_path):
    """A file missing some of the encoder's tensors is refused rather than leaving them random."""
    state, _ = _tiny_state(tmp_path)
    partial = tmp_path / "partial.pt"
    torch.save({k: v for k, v in list(state.items())[1:]}, partial)
    with pytest.raises(EncoderError, match="lacks 1 weights"):
        build_image_encoder(ImageEncoderConfig(name="tiny", pretrained=False, weights_path=str(partial)))


def test_random_tiny_has_no_digest_its_licence_and_pretrained_tiny_is_refused():
    """A random build records no weights digest ('random initialisation' in its provenance) and the registry's
    licence; asking for pretrained 'tiny' weights is an error."""
    enc = build_image_encoder(ImageEncoderConfig(name="tiny", pretrained=False))
    assert enc.weights_digest is None
    assert enc.licence == "none (random initialisation)"
    prov = encoder_provenance(enc)
    assert prov["weights_digest"] == "random initialisation" and prov["gated"] is False
    with pytest.raises(EncoderError, match="no pretrained weights"):
        build_image_encoder(ImageEncoderConfig(name="tiny", pretrained=True))


def test_image_normalisation_is_imagenet_for_builtins_and_refuses_unknown_names():
    """Built-in encoders normalise with the ImageNet statistics; an unknown name is an error naming the close one."""
    norm = image_normalisation("resnet50")
    assert norm == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "input_size": None}
    with pytest.raises(EncoderError, match="did you mean 'efficientnet_lite0'"):
        image_normalisation("efficientnet-lite0")


def test_fingerprint_changes_with_name_and_weights_only():
    """The cache identity: equal for equal name and weights, different when either changes."""
    torch.manual_seed(0)
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert module_fingerprint("x", a) == module_fingerprint("x", b)
    assert module_fingerprint("x", a) != module_fingerprint("y", a)
    with torch.no_grad():
        b.bias[0] += 1e-3
    assert module_fingerprint("x", a) != module_fingerprint("x", b)


def test_missing_weights_path_is_reported_before_building(tmp_path):
    """A weights_path that does not exist is refused by the reachability check (before hours of waiting)."""
    with pytest.raises(EncoderError, match="does not exist"):
        check_weights_reachable(ImageEncoderConfig(name="tiny", pretrained=False,
                                                   weights_path=str(tmp_path / "absent.pt")), None)
    check_weights_reachable(ImageEncoderConfig(name="tiny", pretrained=False), None)


def test_same_padding_matches_tensorflow_for_stride_two():
    """EfficientNet's stride-2 convolutions pad like TensorFlow 'SAME': the extra pixel goes right/bottom."""
    from mmlnb_dist.models.encoders import EfficientNetLite0Features

    conv = EfficientNetLite0Features()._conv_stem  # 3x3, stride 2
    x = torch.randn(1, 3, 8, 8)
    expected = F.conv2d(F.pad(x, [0, 1, 0, 1]), conv.weight, None, 2)
    assert torch.allclose(conv(x), expected, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    return BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=32)).eval()


def test_text_pooling_cls_takes_the_first_state_and_mean_skips_padding(tiny_bert):
    """cls = the first token's state; mean = the average over unmasked tokens only (padding left out)."""
    ids = torch.tensor([[2, 5, 7, 0, 0], [2, 6, 8, 9, 3]])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        hidden = tiny_bert(input_ids=ids, attention_mask=mask).last_hidden_state
        cls = TextEncoder("t", tiny_bert, None, "cls", 8)(ids, mask)
        mean = TextEncoder("t", tiny_bert, None, "mean", 8)(ids, mask)
    assert torch.allclose(cls, hidden[:, 0])
    assert torch.allclose(mean[0], hidden[0, :3].mean(0), atol=1e-6)
    assert torch.allclose(mean[1], hidden[1].mean(0), atol=1e-6)


def test_reachability_of_a_text_alias_looks_up_its_hugging_face_id(monkeypatch):
    """A biomedical alias (pubmedbert) is checked under the Hub id it loads from, not under the short name."""
    import mmlnb_dist.models.encoders as encoders
    from mmlnb_dist.models.config import TextEncoderConfig

    asked = []
    monkeypatch.setattr(encoders, "require_hub_file", lambda repo, filename, error: asked.append((repo, filename)))
    check_weights_reachable(None, TextEncoderConfig(name="pubmedbert"))
    assert asked == [(encoders.TEXT_ENCODER_ALIASES["pubmedbert"], "config.json")]
