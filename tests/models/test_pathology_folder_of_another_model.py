"""`weights_path` = a transformers model folder of another kind of model (a BERT text encoder's folder given for
plip or phikon-v2): refused when the encoder is built, naming the folder and both model types. It built a
randomly initialised CLIP recorded as plip's pretrained weights (silently wrong features), or a BERT that failed
in its forward pass with "You must specify exactly one of input_ids or inputs_embeds"."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("bert")
    BertModel(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(str(folder))
    return folder


@pytest.mark.parametrize("name,expected", [("plip", "clip"), ("phikon-v2", "dinov2")])
def test_a_folder_of_another_model_type_is_refused(bert_folder, name, expected):
    from mmlnb_dist.models.config import ImageEncoderConfig
    from mmlnb_dist.models.encoders import build_image_encoder
    from mmlnb_dist.models.encoders_base import EncoderError

    with pytest.raises(EncoderError) as refused:
        build_image_encoder(ImageEncoderConfig(name=f"{name}-tiny", pretrained=False, weights_path=str(bert_folder)))
    message = str(refused.value)
    assert f"weights_path {bert_folder}" in message
    assert "'bert'" in message and f"'{expected}'" in message
