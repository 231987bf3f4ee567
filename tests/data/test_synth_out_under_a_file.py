"""`data synth --task multilabel --out FILE/sub` (--out below a file: a typo'd path, an archive's name) ended in a
NotADirectoryError traceback, and the single-label task in a bare "[Errno 20]" line. Both tasks now exit 2 with one
line naming --out and why it cannot be written, before anything is written."""
from __future__ import annotations

import pytest

from support.cli import run_cli


@pytest.mark.parametrize("task", ["single", "multilabel"])
def test_out_below_a_file_is_a_clear_error_not_a_traceback(tmp_path, task):
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "sub"
    code, _, err = run_cli(["data", "synth", "--task", task, "--n", "6", "--size", "32", "--out", str(out)])
    assert code == 2
    assert f"cannot write the synthetic set to {out}" in err and "Not a directory" in err
    assert "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "not a folder"
