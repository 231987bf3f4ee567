"""`config explain KEY`, found unguarded by a mutation audit of `core/explain.py`: a key names itself and what is
below it, never a sibling whose name merely starts the same (`train.lr` is not `train.lr_schedule`); a section is
headed by its own documented line; a list index one past the end (or into an empty list) is refused."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import explain, load_config
from mmlnb_dist.core.errors import ConfigError


def _keys(lines):
    return [line.split(" = ")[0].split(":")[0] for line in lines]


def test_a_key_is_not_a_prefix_of_its_siblings_names():
    assert explain(keys=["train.lr"]) == ["train.lr = 0.0001  # Peak learning rate."]
    lines = explain(keys=["data.synth"])
    assert lines and all(k == "data.synth" or k.startswith("data.synth.") for k in _keys(lines)), lines
    assert _keys(explain(keys=["data.synth_dir"])) == ["data.synth_dir"]


def test_a_section_is_headed_by_its_documentation_then_its_fields():
    lines = explain(keys=["train.lr_schedule"])
    assert lines[0].startswith("train.lr_schedule:  # Learning-rate schedule"), lines
    assert _keys(lines[1:]) == ["train.lr_schedule.name", "train.lr_schedule.warmup_ratio",
                                "train.lr_schedule.min_lr_ratio"]
    # one field inside a section: no header, nothing else
    assert _keys(explain(keys=["train.lr_schedule.name"])) == ["train.lr_schedule.name"]


def test_a_value_equal_to_the_default_shows_no_default_beside_it():
    cfg = load_config(None, ["train.lr=0.0001", "train.epochs=3"])
    assert explain(cfg, ["train.lr", "train.epochs"]) == [
        "train.epochs = 3  (default 150)  # Training epochs.", "train.lr = 0.0001  # Peak learning rate."]


def test_the_index_one_past_the_last_entry_is_refused():
    assert _keys(explain(keys=["fusion.curriculum.phases.2.start_epoch"])) == ["fusion.curriculum.phases.2.start_epoch"]
    with pytest.raises(ConfigError, match=r"'fusion.curriculum.phases' has 3 entries \(0-2\); index 3 is out of range"):
        explain(keys=["fusion.curriculum.phases.3"])


def test_an_index_into_an_empty_list_says_it_has_no_entries():
    with pytest.raises(ConfigError, match=r"'vlm.lora.modules_to_save' has no entries; index 0 is out of range"):
        explain(keys=["vlm.lora.modules_to_save.0"])


def test_a_list_entry_added_by_the_config_has_no_default_beside_it():
    cfg = load_config(None, ["vlm.lora.target_modules=[q_proj, k_proj, v_proj, o_proj]"])
    (line,) = explain(cfg, ["vlm.lora.target_modules.3"])
    assert line.startswith('vlm.lora.target_modules.3 = "o_proj"  # ') and "default" not in line.split("#")[0], line
