"""A command-line override of a text field keeps the text the user typed.

Overrides are read as YAML so that `train.lr=3e-4` is a number and `tracking.backends=[stdout]` a list. For a text
field that turned `run.name=2024` into the integer 2024 and `run.name=off` into False, and the run was refused with
"run.name: Input should be a valid string (got 2024)": a run named after a year, a date or an ablation switch could
not be started without quoting tricks. A field that takes text (or a path) now gets the text; numbers, lists and
null still parse, and a field that takes numbers still refuses text."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError


@pytest.mark.parametrize("typed", ["2024", "off", "yes", "1e-4", "20241204", "true"])
def test_a_text_field_gets_the_text_typed(typed):
    assert load_config("cpu-demo", [f"run.name={typed}"]).run.name == typed


def test_paths_optional_text_numbers_and_lists_keep_their_types():
    cfg = load_config("cpu-demo", ["data.shards=2024", "tracking.uri=null", "tracking.experiment=7",
                                   "train.lr=3e-4", "train.epochs=3", "tracking.backends=[stdout]"])
    assert cfg.data.shards == Path("2024") and cfg.tracking.uri is None and cfg.tracking.experiment == "7"
    assert cfg.train.lr == 3e-4 and cfg.train.epochs == 3 and cfg.tracking.backends == ["stdout"]


def test_a_number_field_still_refuses_text():
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config("cpu-demo", ["train.epochs=many"])
