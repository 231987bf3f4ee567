"""A typo'd text encoder name (`minlm`, `tiny_bert`, `pubmedbrt`) is looked up on the Hugging Face Hub, fails, and
was answered with how to download a model called `minlm`: the refusal now says which shipped name or alias was
meant (as the image encoders' does), both when the encoder is built and in the up-front weights check. A Hub id
close to none of them gets no guess."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("typed, meant", [("minlm", "minilm"), ("tiny_bert", "tiny-bert"),
                                          ("pubmedbrt", "pubmedbert"), ("BioBERT", "biobert")])
def test_a_name_close_to_a_known_one_is_answered_with_it(typed, meant):
    from mmlnb_dist.models.config import TextEncoderConfig
    from mmlnb_dist.models.encoders import EncoderError, build_text_encoder, check_weights_reachable

    for attempt in (lambda: build_text_encoder(TextEncoderConfig(name=typed)),
                    lambda: check_weights_reachable(None, TextEncoderConfig(name=typed))):
        with pytest.raises(EncoderError, match=f"text encoder '{typed}'.*did you mean '{meant}'\\?"):
            attempt()


def test_a_hub_id_close_to_no_known_name_gets_no_guess():
    from mmlnb_dist.models.config import TextEncoderConfig
    from mmlnb_dist.models.encoders import EncoderError, build_text_encoder

    with pytest.raises(EncoderError) as err:
        build_text_encoder(TextEncoderConfig(name="someone/clinical-longformer"))
    assert "did you mean" not in str(err.value)
