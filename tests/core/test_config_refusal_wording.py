"""A refusal from a config check reads as the check wrote it, without pydantic's wrapping.

Checks that raise ValueError (a field's or a section's validator) came out as `(root): Value error,
train.best_metric: ...` and `tracking.uri: Value error, ...`. The "Value error, " is gone, and so is the location
when the message already starts with the key it is about (or a key inside it)."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import ConfigError, load_config


def _refusal(overrides):
    with pytest.raises(ConfigError) as err:
        load_config("cpu-demo", overrides)
    return str(err.value).splitlines()[1:]


def test_a_root_check_naming_its_key_reads_as_written():
    lines = _refusal(["train.best_metric=nope"])
    assert lines[0].startswith("  train.best_metric: 'nope' is not a metric of the fusion recipe"), lines
    assert not any("Value error" in line or "(root)" in line for line in lines), lines


def test_a_field_check_loses_the_value_error_prefix():
    lines = _refusal(["tracking.uri=file:./mlruns"])
    assert lines[0].startswith("  tracking.uri: 'file:./mlruns' is not a tracking store"), lines


def test_a_section_check_whose_message_names_no_key_keeps_the_sections_name():
    lines = _refusal(["fusion.curriculum.ramp_end=1"])
    assert lines[0].startswith("  fusion.curriculum: ramp_end (1) must be >= ramp_start (3)"), lines
