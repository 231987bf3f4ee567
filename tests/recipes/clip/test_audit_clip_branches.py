"""Audit of the encoder branches (recipes/clip/branches.py): the stages that train by default and by index path, an
encoder without a default stage, the local weights file the image branch starts from (and that an export's
rebuild never reads), and a text encoder that is not BERT-family."""
from __future__ import annotations

import pytest
import torch
from torch import nn


class _Encoder(nn.Module):
    """An image encoder of no registered name: a body of three indexed submodules."""

    name, out_dim = "my-encoder", 4

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 4))

    def forward(self, x):
        return self.body(x)


def _trainable(module: nn.Module) -> set:
    return {name for name, p in module.named_parameters() if p.requires_grad}


def test_an_unregistered_image_encoder_needs_its_stages_named_by_index_path():
    """No default last stage: a ConfigError naming the key; index paths of its body train exactly those
    submodules; a path the body lacks is a ConfigError naming the key and the path."""
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.branches import ImageEncoderBranch

    with pytest.raises(ConfigError, match=r"clip\.model\.image_encoder_trainable: image encoder 'my-encoder' has no "
                                          r"default last stage"):
        ImageEncoderBranch(_Encoder(), None)
    branch = ImageEncoderBranch(_Encoder(), ["2"])
    assert _trainable(branch) == {"encoder.body.2.weight", "encoder.body.2.bias"}
    assert ImageEncoderBranch(_Encoder(), []).encoder.body[2].weight.requires_grad is False
    with pytest.raises(ConfigError, match=r"clip\.model\.image_encoder_trainable: '5' is not a stage of image "
                                          r"encoder 'my-encoder'"):
        ImageEncoderBranch(_Encoder(), ["5"])


def test_a_frozen_batch_norm_of_an_unregistered_encoder_stays_in_eval_mode_and_a_trained_one_trains():
    from mmlnb_dist.recipes.clip.branches import ImageEncoderBranch

    frozen = ImageEncoderBranch(_Encoder(), ["2"]).train()
    assert frozen.training and not frozen.encoder.body[1].training and frozen.encoder.body[2].training
    trained = ImageEncoderBranch(_Encoder(), ["1"]).train()
    assert trained.encoder.body[1].training
    assert not trained.eval().encoder.body[1].training  # eval() still switches every module off


def test_efficientnet_lite0_trains_its_last_mbconv_block_and_its_head_by_default():
    from mmlnb_dist.recipes.clip.branches import build_image_branch
    from mmlnb_dist.recipes.clip.config import ClipModelConfig

    branch = build_image_branch(ClipModelConfig(image_encoder="efficientnet_lite0", image_encoder_pretrained=False))
    prefixes = {".".join(n.split(".")[2:4]) if ".15." in n else n.split(".")[2] for n in _trainable(branch)}
    assert prefixes == {"_blocks.15", "_conv_head", "_bn1"}
    assert branch.embed_dim == 1280


def test_the_image_branch_starts_from_the_weights_file_and_a_rebuild_without_weights_never_reads_it(tmp_path):
    """`image_encoder_weights_path` is what training starts from; `build_image_branch(cfg, pretrained=False)` (an
    export's reload) builds the architecture alone, even when the file is gone."""
    from safetensors.torch import save_file

    from mmlnb_dist.models.config import ImageEncoderConfig
    from mmlnb_dist.models.encoders import build_image_encoder
    from mmlnb_dist.recipes.clip.branches import build_image_branch
    from mmlnb_dist.recipes.clip.config import ClipModelConfig

    torch.manual_seed(3)
    weights = {k: v.clone() for k, v in
               build_image_encoder(ImageEncoderConfig(name="tiny", pretrained=False)).body.state_dict().items()}
    path = tmp_path / "tiny.safetensors"
    save_file(weights, str(path))
    cfg = ClipModelConfig(image_encoder="tiny", image_encoder_weights_path=str(path))
    torch.manual_seed(0)
    loaded = build_image_branch(cfg).encoder.body.state_dict()
    assert [k for k in weights if not torch.equal(weights[k], loaded[k])] == []
    path.unlink()
    torch.manual_seed(0)
    rebuilt = build_image_branch(cfg, pretrained=False).encoder.body.state_dict()
    assert any(not torch.equal(weights[k], rebuilt[k]) for k in weights if weights[k].is_floating_point())


def test_a_text_encoder_that_is_not_bert_family_is_a_config_error():
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.branches import TextEncoderBranch

    class _Text(nn.Module):
        name, out_dim, max_length = "gpt-ish", 8, 16

        def __init__(self):
            super().__init__()
            self.model = nn.Module()
            self.model.decoder = nn.ModuleList([nn.Linear(8, 8)])

    with pytest.raises(ConfigError, match=r"clip\.model\.text_encoder: 'gpt-ish' is not a BERT-family encoder"):
        TextEncoderBranch(_Text(), 0)
