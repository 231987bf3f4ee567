"""`run.name` names one folder under `run.output_dir`: `.` or `..` put the run folder at or above the folder of every
run (its checkpoints, journals and exports mixed with other runs' folders, or outside the output folder), a
separator nests it and `evaluate`'s `<name>-evaluate-<split>` then lands in another folder; all are refused before
any work starts, naming the key."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import ConfigError, load_config


@pytest.mark.parametrize("name", [".", "..", "", "a/b", "../elsewhere", "a\\b"])
def test_a_run_name_that_is_not_one_folder_name_is_refused(name):
    with pytest.raises(ConfigError, match="run.name"):
        load_config(None, [f"run.name={name}"])


@pytest.mark.parametrize("name", ["mmlnb", "lr=3e-4", "run.2", "..x", "demo run"])
def test_ordinary_names_are_accepted(name):
    assert load_config(None, [f"run.name={name}"]).run.name == name
