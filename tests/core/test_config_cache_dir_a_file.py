"""`run.cache_dir` naming a file (or a folder under a file) is refused when the config is read.

It passed `config validate`, and `train` read the shards, built the engine and encoded the first batches before
its first feature-cache write failed with a NotADirectoryError traceback (`<file>/features`), leaving a run folder
behind."""
from __future__ import annotations

import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.config import ConfigError, load_config


@pytest.mark.parametrize("below", ["", "sub/deeper"])
def test_a_cache_dir_that_is_or_lies_under_a_file_is_refused(tmp_path, below):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=rf"run\.cache_dir: .*{a_file}.* is a file"):
        load_config(None, [f"run.cache_dir={a_file / below if below else a_file}"])


def test_a_cache_dir_still_to_make_or_already_a_folder_is_taken(tmp_path):
    assert load_config(None, [f"run.cache_dir={tmp_path}"]).run.cache_dir == tmp_path
    later = tmp_path / "new" / "cache"
    assert load_config(None, [f"run.cache_dir={later}"]).run.cache_dir == later


def test_train_refuses_it_before_making_the_run_folder(tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    assert main(["train", f"run.output_dir={tmp_path / 'runs'}", f"run.cache_dir={a_file}"]) == 2
    assert "run.cache_dir" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
