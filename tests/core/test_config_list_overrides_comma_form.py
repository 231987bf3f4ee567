"""The comma form of a list override (`data.classes=UD,PD,D`, as the `--classes` flags take it) worked for a list
of names only: `clip.model.head_widths=256,128`, `clip.pos_weight=1.5,2` and the optional
`clip.model.image_encoder_trainable=a,b` were "not a valid list", and a one-item list (`tracking.backends=mlflow`,
`clip.model.head_widths=256`) was refused, where `tracking.backends=stdout,mlflow` was taken."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import ConfigError, load_config


@pytest.mark.parametrize("override, key, expected", [
    ("clip.model.head_widths=256, 128", "clip.model.head_widths", [256, 128]),
    ("clip.model.head_widths=64", "clip.model.head_widths", [64]),
    ("clip.pos_weight=1.5,2", "clip.pos_weight", [1.5, 2.0]),
    ("clip.model.image_encoder_trainable=blocks.11, norm", "clip.model.image_encoder_trainable",
     ["blocks.11", "norm"]),
    ("tracking.backends=mlflow", "tracking.backends", ["mlflow"]),
    ("tracking.backends=stdout,mlflow", "tracking.backends", ["stdout", "mlflow"]),
    ("vlm.lora.target_modules=q_proj", "vlm.lora.target_modules", ["q_proj"]),
    ("data.classes=1,2,3", "data.classes", ["1", "2", "3"]),
    ("data.classes=yes", "data.classes", ["yes"]),
    ('data.classes="UD, PD"', "data.classes", ["UD", "PD"]),
    ("clip.model.head_widths=[32, 16]", "clip.model.head_widths", [32, 16]),
    ("clip.model.image_encoder_trainable=null", "clip.model.image_encoder_trainable", None),
])
def test_a_list_takes_the_comma_form_and_one_item(override, key, expected):
    cfg = load_config(None, [override])
    section, *names = key.split(".")
    value = getattr(cfg, section)
    for name in names:
        value = getattr(value, name)
    assert value == expected


@pytest.mark.parametrize("override, says", [
    ("clip.model.head_widths=256,wide", r"clip.model.head_widths.1: Input should be a valid integer"),
    ("tracking.backends=stdout,mlfow", r"tracking.backends.1: Input should be 'stdout' or 'mlflow'"),
])
def test_a_bad_item_of_the_comma_form_is_named_by_its_index(override, says):
    with pytest.raises(ConfigError, match=says):
        load_config(None, [override])
