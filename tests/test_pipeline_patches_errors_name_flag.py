"""`--patches` errors raised while collecting the patches (an empty folder, a CSV with a bad column, an empty class
folder) did not name the flag: in a pipeline or demo command with several inputs the user could not tell which
input was wrong. They now start with `--patches <value>`."""
from __future__ import annotations

import pytest

from mmlnb_dist.cli import main


def _pipeline(tmp_path, given, capsys):
    code = main(["pipeline", "--patches", str(given), "--config", "cpu-demo", "--until", "shards",
                 f"run.output_dir={tmp_path / 'runs'}", f"data.shards={tmp_path / 'shards'}"])
    err = capsys.readouterr().err
    assert code != 0
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("case", ["empty folder", "bad csv column", "empty class folder"])
def test_a_patches_error_starts_with_the_flag_and_its_value(tmp_path, capsys, case):
    given = tmp_path / "patches"
    if case == "bad csv column":
        given = tmp_path / "patches.csv"
        given.write_text("file_name,cls\na.png,UD\n")
    else:
        (given / ("UD" if case == "empty class folder" else "")).mkdir(parents=True)
    line = _pipeline(tmp_path, given, capsys)
    assert line.startswith(f"mmlnb-dist pipeline: error: --patches {given}: "), line
    what = {"empty folder": "no class subfolders", "bad csv column": "must have columns 'path'",
            "empty class folder": "empty class folder"}[case]
    assert what in line, line
