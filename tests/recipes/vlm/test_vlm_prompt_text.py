"""A prompt written for LLaMA-Factory (`<image>` placeholder) is plain text to Qwen's template: warned about."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes.vlm.preflight import check_prompt_text


def test_a_literal_image_tag_is_warned_about_and_qwen_vision_tokens_are_refused(caplog):
    with caplog.at_level(logging.WARNING):
        check_prompt_text("<image> Describe the patch.")
    assert "<image>" in caplog.text and "vlm.prompt" in caplog.text
    with pytest.raises(ConfigError, match=r"vlm.prompt holds <\|vision_start\|>"):
        check_prompt_text("<|vision_start|> Describe.")
