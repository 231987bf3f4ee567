"""`--config cpu-demo` from a folder holding a folder named cpu-demo: the run folder `runs/cpu-demo`, seen from
`runs/` (`cd runs; mmlnb-dist evaluate --config cpu-demo --export cpu-demo/export`). It was refused as "config file
cpu-demo is a folder": a folder is never a config, and the name is a shipped profile's, which it now reads."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import ConfigError, load_config


def test_a_profile_name_that_is_also_a_folder_here_reads_the_profile(tmp_path, monkeypatch):
    (tmp_path / "cpu-demo" / "export").mkdir(parents=True)
    expected = load_config("cpu-demo")
    monkeypatch.chdir(tmp_path)
    assert load_config("cpu-demo") == expected


def test_a_folder_that_is_no_profile_is_still_refused_as_a_folder(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="config file mine is a folder"):
        load_config("mine")
