"""Audit of models/encoders_base.py and models/config.py: how encoder errors are re-spelled with the caller's
setting names, the `ImageEncoder` base (pooling, normalisation, provenance defaults), the weights-file reader's
refusal of a missing file, the Hub look-up's error, and the encoder sections' documented defaults and bounds."""
from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from mmlnb_dist.models.config import ImageEncoderConfig, TextEncoderConfig
from mmlnb_dist.models.encoders_base import (EncoderError, ImageEncoder, hub_download_hint, load_state_file,
                                             require_hub_file, settings_named)

FUSION = {"model.image_encoder": "fusion.model.image_encoder", "model.text_encoder": "fusion.model.text_encoder"}


def _renamed(names, message: str) -> EncoderError:
    with pytest.raises(EncoderError) as caught:
        with settings_named(names):
            raise EncoderError(message)
    return caught.value


def test_settings_are_renamed_by_prefix_and_text_around_them_is_kept():
    err = _renamed(FUSION, "set model.image_encoder.pretrained=false or model.text_encoder.name to a folder")
    assert str(err) == "set fusion.model.image_encoder.pretrained=false or fusion.model.text_encoder.name to a folder"
    assert isinstance(err, EncoderError) and err.__cause__ is None


def test_a_setting_already_spelled_out_is_left_alone():
    """`fusion.model.image_encoder.x` contains the generic prefix after a dot: it must not become fusion.fusion..."""
    err = _renamed(FUSION, "fusion.model.image_encoder.weights_path is wrong; xmodel.image_encoder stays")
    assert str(err) == "fusion.model.image_encoder.weights_path is wrong; xmodel.image_encoder stays"


def test_whole_keys_win_over_the_prefixes_they_start_with():
    names = {"model.image_encoder": "a.image", "model.image_encoder.pretrained": "clip.image_encoder_pretrained"}
    err = _renamed(names, "set model.image_encoder.pretrained=false (model.image_encoder.name: uni)")
    assert str(err) == "set clip.image_encoder_pretrained=false (a.image.name: uni)"


def test_a_key_is_not_renamed_inside_a_longer_word():
    err = _renamed({"model.image_encoder.name": "clip.model.image_encoder"}, "model.image_encoder.names stays")
    assert str(err) == "model.image_encoder.names stays"


def test_other_errors_pass_through_unchanged():
    with pytest.raises(ValueError, match="^model.image_encoder broke$") as caught:
        with settings_named(FUSION):
            raise ValueError("model.image_encoder broke")
    assert not isinstance(caught.value, EncoderError)


class _Body(nn.Module):
    def forward(self, x):
        return x


def test_image_encoder_pools_the_body_s_map_by_its_spatial_mean_and_normalises_per_channel():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 4, 5)
    enc = ImageEncoder("t", _Body(), out_dim=3, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 2.0))
    torch.testing.assert_close(enc(x), x.mean(dim=(2, 3)))
    assert torch.equal(ImageEncoder("t", _Body(), 3, pool=False)(x), x)
    want = (x - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(enc.normalize(x), want)


def test_image_encoder_defaults_imagenet_statistics_and_its_name_as_source():
    enc = ImageEncoder("resnet50", _Body(), 3)
    assert enc.mean == (0.485, 0.456, 0.406) and enc.std == (0.229, 0.224, 0.225)
    assert enc.source == "resnet50" and enc.input_size is None and enc.weights_digest is None
    assert ImageEncoder("x", _Body(), 3, source="hf-hub:a/b").source == "hf-hub:a/b"


def test_a_missing_weights_file_is_an_encoder_error_naming_it(tmp_path):
    with pytest.raises(EncoderError, match=f"weights file not found: {tmp_path / 'w.safetensors'}"):
        load_state_file(tmp_path / "w.safetensors")
    with pytest.raises(EncoderError, match="weights file not found"):
        load_state_file(tmp_path)  # a folder is not a weights file


def test_safetensors_files_load_by_their_suffix(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.arange(4.0)}, str(tmp_path / "w.safetensors"))
    assert torch.equal(load_state_file(str(tmp_path / "w.safetensors"))["w"], torch.arange(4.0))


def test_a_hub_file_that_cannot_be_had_raises_the_caller_s_error(tmp_path):
    """Offline (the tests' HF_HUB_OFFLINE=1) and not cached: the caller's error, made from the OSError."""
    seen = []

    def error(err):
        seen.append(err)
        return EncoderError("not here")

    with pytest.raises(EncoderError, match="not here"):
        require_hub_file(str(tmp_path / "no-such-model"), "config.json", error)
    assert len(seen) == 1 and isinstance(seen[0], OSError)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    require_hub_file(str(tmp_path / "model"), "config.json", error)  # a local folder holding it: no error
    assert len(seen) == 1


def test_the_download_hint_names_the_repository_and_the_cache():
    from huggingface_hub import constants

    hint = hub_download_hint("owner/model")
    assert "huggingface-cli download owner/model" in hint and constants.HF_HUB_CACHE in hint
    assert "HF_HUB_OFFLINE=1" in hint


def test_encoder_sections_default_to_the_paper_s_encoders():
    """SPEC section 3: VGG16 with ImageNet weights, BERT-base (bert-base-uncased) through its pooler; the token
    limit covers generated descriptions (256 new tokens)."""
    image, text = ImageEncoderConfig(), TextEncoderConfig()
    assert (image.name, image.pretrained, image.weights_path) == ("vgg16", True, None)
    assert (text.name, text.pooling, text.max_length) == ("bert-base-uncased", "pooler", 320)


def test_encoder_sections_refuse_bad_values():
    with pytest.raises(ValidationError):
        TextEncoderConfig(max_length=7)
    assert TextEncoderConfig(max_length=8).max_length == 8
    with pytest.raises(ValidationError):
        TextEncoderConfig(pooling="max")
    assert {TextEncoderConfig(pooling=p).pooling for p in ("pooler", "cls", "mean")} == {"pooler", "cls", "mean"}
    with pytest.raises(ValidationError):
        ImageEncoderConfig(nmae="uni")  # a misspelt key is an error, not silently ignored
