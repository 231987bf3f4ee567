"""`--config=~/cfg.yaml`: bash expands no `~` after `--config=`, so the program got the `~` and answered "config
file ~/cfg.yaml not found", where every path setting of a config reads `~` as the home folder. It now does too."""
from __future__ import annotations

from mmlnb_dist.cli import main
from mmlnb_dist.config import load_config


def test_a_config_path_starting_with_tilde_is_read_from_the_home_folder(tmp_path, monkeypatch, capsys):
    (tmp_path / "cfg.yaml").write_text("run: {name: from-home}\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    assert load_config("~/cfg.yaml").run.name == "from-home"
    assert main(["config", "show", "--config=~/cfg.yaml"]) == 0
    assert "name: from-home" in capsys.readouterr().out
