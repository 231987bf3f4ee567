"""`~` in a path setting is the user's home folder, from a file or an override, in every section.

No path field called expanduser: `data synth 'data.synth_dir=~/synthx'` made a folder named `~` in the current
folder (and a later `rm -rf ~` there deletes the home folder). Every Path-typed field of every section (the shared
ones and the recipes', which live in other packages) now expands it when the config is read or assigned."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmlnb_dist.cli import main
from mmlnb_dist.config import load_config


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    return home


def test_an_override_of_a_path_expands_the_home_folder(home):
    cfg = load_config("cpu-demo", ["data.synth_dir=~/synthx", "run.cache_dir=~/cache", "vlm.pairs=~/pairs",
                                   "slides.mask_dir=~/masks", "run.output_dir=~"])
    assert cfg.data.synth_dir == home / "synthx" and cfg.run.cache_dir == home / "cache"
    assert cfg.vlm.pairs == home / "pairs" and cfg.slides.mask_dir == home / "masks" and cfg.run.output_dir == home


def test_a_config_file_path_expands_the_home_folder(home, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("run: {output_dir: ~/runs}\ndata:\n  shards: ~/shards/a\n")
    cfg = load_config(path)
    assert cfg.run.output_dir == home / "runs" and cfg.data.shards == home / "shards" / "a"
    assert cfg.run.dir == home / "runs" / "mmlnb"


def test_an_assigned_path_and_the_shown_config_expand_it(home, capsys):
    cfg = load_config("cpu-demo")
    cfg.data.shards = "~/other"
    assert cfg.data.shards == home / "other"
    assert main(["config", "show", "data.synth_dir=~/synthx"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["synth_dir"] == str(home / "synthx")


def test_a_tilde_inside_a_path_and_text_fields_stay_as_written(home):
    cfg = load_config("cpu-demo", ["data.shards=shards/~x", "run.name=~me", "tracking.experiment=~/x"])
    assert cfg.data.shards == Path("shards/~x") and cfg.run.name == "~me" and cfg.tracking.experiment == "~/x"
