"""`describe --shards=~/x` / `--out=~/x` and `export-vlm --adapter=~/a` (bash expands no `~` after `=`): the
flags took `~` literally ("not found: ~/x", or a folder named `~` made in the current folder) where `shards build`
reads it as the home folder; the VLM commands' path flags now read it so too."""
from __future__ import annotations

import pytest

from mmlnb_dist.cli import main


@pytest.mark.parametrize("argv, named", [
    (["describe", "--shards=~/shards"], "shards"),
    (["describe", "--adapter=~/adapter"], "adapter"),
    (["export-vlm", "--adapter=~/adapter", "--out=~/merged"], "adapter"),
])
def test_vlm_path_flags_read_tilde_as_the_home_folder(tmp_path, monkeypatch, capsys, argv, named):
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(home / named) in err and "~/" not in err, err
    assert not (here / "~").exists()
