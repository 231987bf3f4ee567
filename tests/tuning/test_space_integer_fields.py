"""Ranges a config field's type cannot take are refused when the space is read, before Ray starts.

`train.global_batch_size: {uniform: [16, 64]}` passed the start-up check (both ends and the midpoint, 40, are
whole numbers), then every trial failed: Ray sampled 37.07..., which an integer field refuses. The field's type
now decides: a uniform or loguniform range on an integer field is refused naming the key and what to use instead
(randint, choice, quniform with a whole step). `scale: epochs` turns values into whole epochs, so it is refused on
a field that is not an integer (`train.lr` became a whole number of epochs), and its values must be numbers (a
list of text choices gave a raw ValueError)."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _space(tmp_path, line):
    path = tmp_path / "space.yaml"
    path.write_text(f"params:\n  {line}\n")
    return path


def _base():
    return load_config(ROOT / "launch" / "profiles" / "cpu-demo.yaml").model_dump(mode="json")


@pytest.mark.parametrize("line, key, suggestion", [
    ("train.global_batch_size: {uniform: [16, 64]}", "train.global_batch_size", r"randint: \[16, 65\]"),
    ("train.global_batch_size: {loguniform: [16, 64]}", "train.global_batch_size", r"randint: \[16, 65\]"),
    ("vlm.lora.r: {uniform: [4.0, 64.0]}", "vlm.lora.r", r"randint: \[4, 65\]"),
    ("train.global_batch_size: {quniform: [16, 64, 0.5]}", "train.global_batch_size", r"whole step"),
])
def test_a_fractional_range_on_an_integer_field_is_refused_naming_the_key(tmp_path, line, key, suggestion):
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.tuning.space import load_space

    path = _space(tmp_path, line)
    for base in (None, _base()):  # with the search's config (the driver's call) and without it
        with pytest.raises(ConfigError, match=rf"{path}: '{key}' takes integers.*{suggestion}") as err:
            load_space(path, base)
        assert "choice" in str(err.value)


@pytest.mark.parametrize("line", [
    "train.global_batch_size: {randint: [16, 65]}",
    "train.global_batch_size: {quniform: [16, 64, 8]}",
    "train.global_batch_size: {choice: [16, 32, 64]}",
    "train.lr: {uniform: [1.0e-4, 1.0e-2]}",  # a float field: any range
    "fusion.curriculum.ramp_start: {uniform: [0.15, 0.35], scale: epochs}",  # whole epochs: Ray samples a randint
])
def test_ranges_an_integer_field_can_take_are_accepted(tmp_path, line):
    from mmlnb_dist.tuning.space import load_space, to_tune_space

    space = load_space(_space(tmp_path, line), _base())
    to_tune_space(space, "random", 9)


def test_epoch_scaling_is_refused_on_a_field_that_is_not_an_integer(tmp_path):
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.tuning.space import load_space

    path = _space(tmp_path, "train.lr: {uniform: [0.1, 0.5], scale: epochs}")
    with pytest.raises(ConfigError, match=rf"{path}: 'train.lr': scale: epochs .*integer.*takes float"):
        load_space(path, _base())


@pytest.mark.parametrize("line", [
    "fusion.curriculum.ramp_start: {choice: [early, late], scale: epochs}",
    "fusion.curriculum.schedule: {choice: [step, linear], scale: epochs}",
    "fusion.curriculum.ramp_start: {grid: [0.2, true], scale: epochs}",
])
def test_epoch_scaling_of_values_that_are_not_numbers_is_a_clear_error(tmp_path, line):
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.tuning.space import load_space

    path = _space(tmp_path, line)
    key = line.split(":")[0]
    for base in (None, _base()):
        with pytest.raises(ConfigError, match=rf"{path}: '{key}': scale: epochs needs numbers"):
            load_space(path, base)
