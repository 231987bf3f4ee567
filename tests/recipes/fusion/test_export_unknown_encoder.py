"""An export naming an image encoder this installation does not have (made by a newer version, or with an
encoder registered by a plugin; `model_config.json` edited by hand) failed with `KeyError: 'name'` and a
traceback, from `evaluate --export`, `register` and a served model alike. It is now a UserError naming the file,
the encoder and the encoders there are."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.recipes.fusion.export import EXPORT_FORMAT, build_model_from_export
from mmlnb_dist.recipes.fusion.config import FusionModelConfig


def test_an_unknown_image_encoder_is_named_with_the_file(tmp_path):
    meta = {"format": EXPORT_FORMAT, "classes": ["UD", "PD", "D"], "image_encoder": "resnet_nope",
            "text_encoder": None, "model": FusionModelConfig(mode="image_only").model_dump(mode="json"),
            "image_size": 32, "preprocessing": {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}}
    (tmp_path / "model_config.json").write_text(json.dumps(meta))
    with pytest.raises(UserError) as err:
        build_model_from_export(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "model_config.json") in message and "resnet_nope" in message and "tiny" in message, message
