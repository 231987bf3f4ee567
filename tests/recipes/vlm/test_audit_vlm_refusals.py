"""Mutation audit of the VLM settings refusals: every Qwen vision token in the prompt is refused (not only the
first three), a missing `./` or `../` model folder is a missing folder (not a Hub id to look up), `vlm.max_length`
below 16 is refused, and an adapter on the `tiny` base is held to the tower (`vlm.tiny_vision`) it was trained
with, as to its seed."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from mmlnb_dist.core.errors import ConfigError, UserError
from mmlnb_dist.recipes.vlm.config import VLMConfig
from mmlnb_dist.recipes.vlm.preflight import QWEN_VISION_TOKENS, check_prompt_text

PIX = 56 * 56


@pytest.mark.parametrize("token", QWEN_VISION_TOKENS)
def test_each_qwen_vision_token_in_the_prompt_is_refused_by_name(token):
    with pytest.raises(ConfigError, match="vlm.prompt holds") as err:
        check_prompt_text(f"Describe {token} the patch.")
    assert token in str(err.value)


def test_every_vision_token_in_the_prompt_is_named_and_plain_text_passes():
    with pytest.raises(ConfigError) as err:
        check_prompt_text("<|vision_pad|> Describe <|video_pad|> it.")
    assert "<|video_pad|>, <|vision_pad|>" in str(err.value)
    check_prompt_text("Describe the <|im_start|>-free patch, vision start and image pad as words.")


def test_a_missing_relative_folder_is_refused_without_a_hub_look_up(tmp_path, monkeypatch):
    """`./qwen` and `../qwen` are paths (one slash, like a Hub id `org/name`): missing, they are refused as a
    folder; present, the folder is looked up."""
    from mmlnb_dist.recipes.vlm import source

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    asked = []
    monkeypatch.setattr(source, "require_hub_file", lambda name, file, err: asked.append(name))
    for missing in ("./qwen", "../qwen", ".qwen"):
        with pytest.raises(UserError, match=f"vlm.model '{missing}': no such folder"):
            source.check_vlm_loadable(missing, "vlm.model")
    assert asked == []
    (work / "qwen").mkdir()
    source.check_vlm_loadable("./qwen")
    assert len(asked) == 1 and (work / asked[0]).resolve() == (work / "qwen").resolve()


def test_max_length_below_sixteen_tokens_is_refused():
    assert VLMConfig(max_length=16).max_length == 16
    with pytest.raises(ValidationError, match="max_length"):
        VLMConfig(max_length=15)


def test_an_adapter_on_tiny_is_held_to_the_tower_it_was_trained_with():
    from mmlnb_dist.recipes.vlm.trained_with import settings_differences

    given = VLMConfig(model="tiny", prompt="P", min_pixels=PIX, max_pixels=PIX, tiny_vision="random")
    trained = {"prompt": "P", "min_pixels": PIX, "max_pixels": PIX, "model": "tiny", "tiny_seed": 0,
               "tiny_vision": "distilled"}
    assert settings_differences(given, "tiny", "adapter", trained) == [
        "vlm.tiny_vision: given 'random', trained with 'distilled'"]
    assert settings_differences(given.model_copy(update={"tiny_vision": "distilled"}), "tiny", "adapter",
                                trained) == []
