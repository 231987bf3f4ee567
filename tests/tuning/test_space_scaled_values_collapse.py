"""`scale: epochs` values are rounded to whole epochs of `train.epochs`: a choice like `[0.3, 0.31]` on 9 epochs
gave epoch 3 twice, so the search silently searched one value while its space, `search.json` and the user said two.
Such a choice or grid is refused when the space is read against the base config, naming the key, the values and the
epoch they became; a range whose ends give one epoch only (every trial trains the same value) is warned about."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.tuning.space import SpaceError, load_space

KEY = "fusion.curriculum.ramp_start"


def _load(tmp_path, spec, epochs=9):
    base = load_config("cpu-demo", [f"train.epochs={epochs}"]).model_dump(mode="json")
    space = tmp_path / "space.yaml"
    space.write_text(f"params:\n  {KEY}: {spec}\n")
    return load_space(space, base)


@pytest.mark.parametrize("kind", ["choice", "grid"])
def test_scaled_values_that_round_to_one_epoch_are_refused(tmp_path, kind):
    with pytest.raises(SpaceError, match=rf"'{KEY}': {kind} values 0\.3, 0\.31 \(scale: epochs\) all give epoch 3 "
                                         r"of train\.epochs=9: .*2 distinct value\(s\), not 3"):
        _load(tmp_path, f"{{{kind}: [0.3, 0.31, 0.6], scale: epochs}}")


def test_distinct_epochs_load_and_more_epochs_separate_the_values(tmp_path):
    assert _load(tmp_path, "{choice: [0.3, 0.6], scale: epochs}")[KEY]["choice"] == [0.3, 0.6]
    with pytest.raises(SpaceError, match=r"0\.2, 0\.25 \(scale: epochs\) all give epoch 2"):
        _load(tmp_path, "{choice: [0.2, 0.25], scale: epochs}")
    assert _load(tmp_path, "{choice: [0.2, 0.25], scale: epochs}", epochs=20)[KEY]["choice"] == [0.2, 0.25]


def test_a_scaled_range_of_a_single_epoch_is_warned_about(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.tuning.space"):
        _load(tmp_path, "{uniform: [0.3, 0.32], scale: epochs}")
    assert f"'{KEY}': uniform [0.3, 0.32] (scale: epochs) gives epoch 3 only of train.epochs=9" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.tuning.space"):
        _load(tmp_path, "{uniform: [0.15, 0.35], scale: epochs}")
    assert "only of train.epochs" not in caplog.text
