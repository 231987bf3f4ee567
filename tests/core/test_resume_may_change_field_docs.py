"""`train.checkpoint_every_steps` is a key a resume may change (`core.recipe.RESUME_MAY_CHANGE`; a preempted run may
resume with step checkpoints, to the same weights: tests/recipes/clip/test_clip_resume_checkpoint_cadence.py), but its
description (what `config explain` and the generated reference show) said "it cannot be changed on resume", so a
user preempted once started over. No key a resume accepts may be described as one it refuses."""
from __future__ import annotations

import re

from mmlnb_dist.config import Config
from mmlnb_dist.core.recipe import RESUME_MAY_CHANGE


def _field(dotted: str):
    model, field = Config, None
    for part in dotted.split("."):
        field = model.model_fields[part]
        model = field.annotation
    return field


def test_no_key_a_resume_accepts_is_described_as_refused_on_resume():
    checked = [key for key in RESUME_MAY_CHANGE if "*" not in key and key.split(".")[0] in Config.model_fields]
    assert "train.checkpoint_every_steps" in checked
    for key in checked:
        text = (_field(key).description or "").lower()
        assert not re.search(r"(cannot|can't|may not|must not) (be )?chang\w* (on|at|when) resum", text), key
