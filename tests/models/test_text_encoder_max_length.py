"""`model.text_encoder.max_length` above what the encoder has position embeddings for is refused when the encoder
is built, naming the setting and the limit. It was accepted: descriptions shorter than the encoder's limit trained
as usual, and the first one longer failed mid-epoch inside BERT's embedding lookup ("index out of range in self"),
hours into a run on real data."""
from __future__ import annotations

import pytest

from mmlnb_dist.models.config import TextEncoderConfig
from mmlnb_dist.models.encoders import EncoderError, build_text_encoder


def test_a_token_limit_past_the_position_embeddings_is_refused_at_build():
    with pytest.raises(EncoderError, match=r"model\.text_encoder\.max_length 600 .*512"):
        build_text_encoder(TextEncoderConfig(name="tiny-bert", pooling="mean", max_length=600))


def test_the_encoders_own_limit_is_accepted_and_a_long_text_is_cut_to_it():
    encoder = build_text_encoder(TextEncoderConfig(name="tiny-bert", pooling="mean", max_length=512))
    tokens = encoder.tokenize(["cells " * 2000])
    assert tokens["input_ids"].shape == (1, 512)
    assert encoder(**tokens).shape == (1, encoder.out_dim)


def test_the_clip_recipe_names_its_own_setting():
    from mmlnb_dist.recipes.clip.branches import build_text_branch
    from mmlnb_dist.recipes.clip.config import ClipModelConfig

    cfg = ClipModelConfig(text_encoder="tiny-bert", text_encoder_pooling="mean")
    cfg.towers.max_length = 600
    with pytest.raises(EncoderError, match=r"^clip\.model\.towers\.max_length 600 .*at most 512"):
        build_text_branch(cfg)
