"""`clip.model.head_widths` of a zero or negative width passed `config validate` and failed only when the model was
built (torch's Linear refuses it, after data and towers were loaded). A width below 1 is now refused naming the
field; an empty list stays valid (a linear head on the fused embedding)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from mmlnb_dist.cli import main
from mmlnb_dist.recipes.clip.config import ClipModelConfig

PROFILE = "launch/profiles/clip-demo.yaml"


@pytest.mark.parametrize("widths", ["0,-1", "64,0", "-3"])
def test_a_width_below_one_is_refused_by_config_validate(capsys, widths):
    code = main(["config", "validate", "--config", PROFILE, f"clip.model.head_widths={widths}"])
    err = capsys.readouterr().err
    assert code == 2 and "head_widths" in err, err


def test_the_model_section_refuses_a_zero_width():
    with pytest.raises(ValidationError, match="head_widths"):
        ClipModelConfig.model_validate({"head_widths": [16, 0]})


def test_an_empty_head_is_a_linear_head():
    assert ClipModelConfig.model_validate({"head_widths": []}).head_widths == []
