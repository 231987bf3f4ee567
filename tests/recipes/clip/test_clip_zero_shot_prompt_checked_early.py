"""A zero-shot prompt without the `{label}` placeholder (every label would get the same prompt, so the same score)
is refused when the config loads: `config validate` said ok and a pipeline built its shards before train refused
it (the check read the shard manifest first)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from mmlnb_dist.cli import main
from mmlnb_dist.recipes.clip.config import ClipModelConfig

PROFILE = "launch/profiles/clip-multilabel.yaml"


def test_config_validate_refuses_a_prompt_without_the_placeholder(capsys):
    code = main(["config", "validate", "--config", PROFILE, "clip.model.fusion=zero_shot",
                 "clip.model.zero_shot_prompt=A pathology image"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "clip.model.zero_shot_prompt" in err and "'A pathology image'" in err and "{label}" in err, err


def test_the_section_refuses_it_and_keeps_a_good_one():
    with pytest.raises(ValidationError, match="no {label} placeholder"):
        ClipModelConfig.model_validate({"fusion": "zero_shot", "zero_shot_prompt": "tissue"})
    assert ClipModelConfig(zero_shot_prompt="tissue with {label}").zero_shot_prompt == "tissue with {label}"
