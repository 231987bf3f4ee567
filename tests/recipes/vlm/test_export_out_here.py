"""`export-vlm --out .` in an empty current folder was a ValueError traceback ("PosixPath('.') has an empty
name"), and `--out ../here` from inside it replaced the current folder whole, leaving the shell in a removed
folder. It is refused before any work, naming --out and what to give instead."""
from __future__ import annotations

import pytest

from support.cli import run_cli


@pytest.mark.parametrize("out", [".", "../here"])
def test_the_current_folder_as_out_is_refused_without_a_traceback(tmp_path, monkeypatch, out):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    code, _, err = run_cli(["export-vlm", "--base", "tiny", "--adapter", str(tmp_path / "adapter"), "--out", out,
                            "--config", "cpu-demo", f"vlm.cache_dir={tmp_path / 'cache'}"])
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert "--out" in last and "current folder" in last and "Traceback" not in err, last
    assert not (tmp_path / "cache").exists() and not any(here.iterdir())
