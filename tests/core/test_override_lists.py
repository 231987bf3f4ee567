"""Dotted overrides into lists. `fusion.curriculum.phases.1.start_epoch=40` (the freezing phase boundaries, what a
user changes to ablate the curriculum, and the key the shipped `curriculum` search space samples) was refused on
the command line as "'fusion.curriculum.phases' is a value, not a section"; `data.classes=UD,PD,D` (the form of
`--classes`) was "not a valid list"; and `data.classes=[UD, PD, UD]` was accepted, leaving class 2 a name no label
maps to."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import Config, ConfigError, load_config


def test_a_list_entry_is_overridden_by_its_index_and_the_rest_keeps_its_defaults():
    cfg = load_config(None, ["fusion.curriculum.phases.1.start_epoch=40"])
    default = Config().fusion.curriculum.phases
    got = cfg.fusion.curriculum.phases
    assert got[1].start_epoch == 40 and len(got) == len(default)
    assert got[1].model_copy(update={"start_epoch": default[1].start_epoch}) == default[1]
    assert got[0] == default[0] and got[2] == default[2]


def test_the_index_reads_the_config_files_list(tmp_path):
    path = tmp_path / "two_phases.yaml"
    path.write_text("fusion:\n  curriculum:\n    phases:\n"
                    "      - {start_epoch: 0, train_image_encoder: true, train_text_encoder: false}\n"
                    "      - {start_epoch: 5, train_image_encoder: false, train_text_encoder: true}\n")
    cfg = load_config(path, ["fusion.curriculum.phases.1.train_image_encoder=true"])
    assert [(p.start_epoch, p.train_image_encoder, p.train_text_encoder) for p in cfg.fusion.curriculum.phases] == \
        [(0, True, False), (5, True, True)]


@pytest.mark.parametrize("key, message", [
    ("fusion.curriculum.phases.3.start_epoch", r"has 3 entries \(0-2\); index 3"),
    ("fusion.curriculum.phases.first.start_epoch", r"'first' is not an index"),
    ("fusion.curriculum.phases.1.start", r"'start' is not a field of fusion.curriculum.phases.1; did you mean"),
])
def test_a_bad_index_or_field_inside_a_list_is_named(key, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [f"{key}=4"])


def test_a_list_of_names_takes_the_comma_form_of_the_command_line_flags():
    assert load_config(None, ["data.classes=A, B,C"]).data.classes == ["A", "B", "C"]
    assert load_config(None, ["data.classes=[A, B]"]).data.classes == ["A", "B"]


def test_a_class_listed_twice_is_refused():
    with pytest.raises(ConfigError, match=r"data.classes.*'UD' is listed twice"):
        load_config(None, ["data.classes=[UD, PD, UD]"])


def test_an_entry_of_a_list_of_values_is_overridden_by_its_index():
    """The shipped `clip` search space samples `clip.model.head_widths.0`; the command line takes it too."""
    default = Config().clip.model.head_widths
    got = load_config(None, ["clip.model.head_widths.0=7"]).clip.model.head_widths
    assert got == [7, *default[1:]]
    with pytest.raises(ConfigError, match=r"'clip.model.head_widths.0' is a value, not a section"):
        load_config(None, ["clip.model.head_widths.0.width=7"])
