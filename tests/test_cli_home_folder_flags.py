"""`--out=~/x` (bash expands no `~` after `=`) made a folder named `~` in the current folder for `data synth` and
`shards build`, and `--input=~/x` was "not found"; path flags now read `~` as the home folder, as path settings do."""
from __future__ import annotations

from mmlnb_dist.cli import main


def test_data_synth_and_shards_build_read_tilde_as_the_home_folder(tmp_path, monkeypatch):
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    assert main(["data", "synth", "--n", "12", "--size", "32", "--n-slides", "6", "--out=~/src"]) == 0
    assert main(["shards", "build", "--input=~/src", "--out=~/shards", "--descriptions=~/src/descriptions.jsonl",
                 "--no-progress"]) == 0
    assert main(["shards", "verify", "~/shards", "--no-progress"]) == 0
    assert (home / "src" / "labels.csv").is_file() and (home / "shards" / "manifest.json").is_file()
    assert not (here / "~").exists()


def test_evaluate_reads_tilde_in_its_model_folder_as_the_home_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "a-file").write_text("x")
    for flag in ("--export", "--checkpoint"):
        assert main(["evaluate", f"{flag}=~/a-file"]) == 2
        assert f"{flag} {tmp_path / 'a-file'}: not a folder" in capsys.readouterr().err
