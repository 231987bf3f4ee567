"""A grid or choice that lists a value twice ran the same trials twice (a grid runs every value, so `grid: [16, 32,
16]` trained batch size 16 twice per sample) or silently weighted the choice: it is refused naming the key and the
value, before Ray starts."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize("kind, values, twice", [
    ("grid", "[16, 32, 16]", "16"),
    ("choice", "[step, linear, step]", "'step'"),
    ("grid", "[1.0e-3, 0.001]", "0.001"),
    ("choice", "[0.5, 0.5]", "0.5"),
])
def test_a_value_given_twice_is_refused_naming_it(tmp_path, kind, values, twice):
    from mmlnb_dist.tuning.space import SpaceError, load_space

    key = "fusion.curriculum.schedule" if "step" in values else (
        "train.global_batch_size" if "16" in values else "train.lr")
    space = tmp_path / "space.yaml"
    space.write_text(f"params:\n  {key}: {{{kind}: {values}}}\n")
    with pytest.raises(SpaceError) as err:
        load_space(space)
    message = str(err.value)
    assert f"'{key}': {kind} holds {twice} twice" in message, message


def test_distinct_values_are_taken(tmp_path):
    from mmlnb_dist.tuning.space import load_space

    space = tmp_path / "space.yaml"
    space.write_text("params:\n  train.global_batch_size: {grid: [16, 32]}\n  fusion.curriculum.schedule: "
                     "{choice: [step, linear]}\n")
    assert load_space(space)["train.global_batch_size"] == {"grid": [16, 32]}
