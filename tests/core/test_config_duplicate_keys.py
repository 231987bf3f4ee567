"""A key written twice in one YAML flow mapping (`{a: 1, b: 2, a: 3}`), in a file or in an override, is refused.

Block-style duplicates (two `train:` sections) were refused already; the check compared the lines of the two
keys, so two on one line passed: `distributed: {zero_stage: 2, precision: bf16, zero_stage: 0}` ran ZeRO 0 and
`train.lr_schedule={name: cosine, name: constant}` a constant lr, without a word. Overrides were not checked at
all. Both are now refused naming the key (and the file and line, or the override)."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import ConfigError, load_config
from mmlnb_dist.core.files import load_yaml


def test_a_key_written_twice_on_one_line_of_a_file_is_refused(tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text("train: {epochs: 3}\ndistributed: {zero_stage: 2, precision: bf16, zero_stage: 0}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "'zero_stage'" in text and "twice" in text and "line 2" in text and str(path) in text, text


def test_a_key_written_twice_in_a_flow_mapping_over_two_lines_names_both(tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text("distributed: {zero_stage: 2,\n  zero_stage: 0}\n")
    with pytest.raises(ConfigError, match=r"'zero_stage'.*line 1.*line 2"):
        load_config(path)


def test_a_key_written_twice_in_an_override_is_refused_naming_the_override():
    override = "train.lr_schedule={name: cosine, name: constant}"
    with pytest.raises(ConfigError) as err:
        load_config("cpu-demo", [override])
    text = str(err.value)
    assert "'name'" in text and "twice" in text and override in text, text


def test_a_list_of_mappings_in_a_flow_on_one_line_is_no_duplicate(tmp_path):
    # equal keys in different mappings of one line are not written twice in one mapping
    override = "fusion.curriculum.phases=[{start_epoch: 0}, {start_epoch: 3}]"
    assert [p.start_epoch for p in load_config("cpu-demo", [override]).fusion.curriculum.phases] == [0, 3]
    path = tmp_path / "merge.yaml"
    path.write_text("a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nc: {<<: *b, x: 3}\n")
    assert load_yaml(path)["c"] == {"x": 3, "y": 2}
