"""Audit of the CLIP towers (recipes/clip/towers.py, openclip_towers.py, blocks.py): token length capped by the
position table, other image sizes interpolated, every block trainable when all are asked, the tiny builds' size
guards, and the open_clip attention mask and image-size guard."""
from __future__ import annotations

import pytest
import torch


def _towers(name: str = "tiny", n: int = 0, max_length: int = 16, layers: int = 2, **tiny):
    from mmlnb_dist.recipes.clip.config import ClipTowersConfig
    from mmlnb_dist.recipes.clip.towers import build_towers

    torch.manual_seed(0)
    cfg = ClipTowersConfig.model_validate({"name": name, "unfreeze_blocks": n, "max_length": max_length,
                                           "tiny": {"layers": layers, **tiny}})
    return build_towers(cfg, image_size=32)


def test_tokens_are_cut_to_max_length_and_max_length_to_the_position_table():
    """max_length above CLIP's 77 positions is capped at 77; a long caption is truncated to max_length."""
    assert _towers(max_length=500).max_length == 77
    towers = _towers(max_length=8)
    enc = towers.tokenize(["tissue " * 30, "fat"])
    assert enc["input_ids"].shape == (2, 8) and enc["attention_mask"][1].sum() < 8
    assert enc["attention_mask"][0].sum() == 8


def test_images_of_another_size_are_encoded_with_interpolated_positions():
    """A transformers tower built for 32 px encodes 64 px images too (one embedding each)."""
    towers = _towers()
    with torch.no_grad():
        out = towers.encode_image(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, towers.embed_dim) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["tiny", "tiny-open_clip"])
def test_unfreezing_as_many_blocks_as_a_tower_has_trains_every_block_and_nothing_else(name):
    """unfreeze_blocks equal to the tower depth is allowed: all blocks train, embeddings and projections stay."""
    towers = _towers(name, n=2, layers=2)
    blocks = {id(p) for b in (towers.image_blocks, towers.text_blocks) for p in b.parameters()}
    trainable = {id(p) for p in towers.parameters() if p.requires_grad}
    assert trainable == blocks


def test_logit_scale_is_a_one_element_parameter_with_clips_initial_value():
    """0-dim logit_scale becomes shape (1,) (DeepSpeed broadcasts bytes), same value log(1/0.07), same grad flag."""
    towers = _towers()
    assert isinstance(towers.logit_scale, torch.nn.Parameter) and towers.logit_scale.shape == (1,)
    assert torch.allclose(towers.logit_scale.exp(), torch.tensor([1 / 0.07]), atol=1e-3)
    assert not towers.logit_scale.requires_grad  # frozen with the rest of the CLIP (unfreeze_blocks=0)


@pytest.mark.parametrize("name", ["tiny", "tiny-open_clip"])
def test_an_image_size_not_a_multiple_of_the_patch_is_a_config_error(name):
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.recipes.clip.config import ClipTowersConfig
    from mmlnb_dist.recipes.clip.towers import build_towers

    cfg = ClipTowersConfig.model_validate({"name": name, "tiny": {"layers": 1, "patch_size": 8}})
    with pytest.raises(ConfigError, match="patch_size"):
        build_towers(cfg, image_size=36)


def test_tiny_open_clip_needs_hidden_divisible_by_heads():
    from mmlnb_dist.core.errors import ConfigError

    with pytest.raises(ConfigError, match="heads"):
        _towers("tiny-open_clip", layers=1, hidden=30, heads=4)


def test_tiny_text_tower_pools_at_berts_sep_token():
    """The tiny CLIP's end token is the tokenizer's [SEP] and its pad token the tokenizer's pad."""
    towers = _towers()
    text_cfg = towers.clip.config.text_config
    assert text_cfg.eos_token_id == towers.tokenizer.sep_token_id
    assert text_cfg.pad_token_id == towers.tokenizer.pad_token_id
    assert text_cfg.bos_token_id == towers.tokenizer.cls_token_id


def test_open_clip_tokens_mask_the_padding_and_other_image_sizes_are_refused():
    """open_clip pads to its context length with id 0: the mask is 1 exactly where ids are non-zero; its ViT takes
    only the built image size (a ConfigError naming data.loader.image_size)."""
    from mmlnb_dist.core.errors import ConfigError

    towers = _towers("tiny-open_clip", layers=1, max_length=12)
    enc = towers.tokenize(["a fat patch", "tissue"])
    assert enc["input_ids"].shape == (2, 12)
    assert torch.equal(enc["attention_mask"], (enc["input_ids"] != 0).long())
    assert enc["attention_mask"].sum(1).tolist() == [5, 3]  # start, words, end
    assert towers.image_mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    with pytest.raises(ConfigError, match="data.loader.image_size"):
        towers.encode_image(torch.randn(1, 3, 64, 64))
