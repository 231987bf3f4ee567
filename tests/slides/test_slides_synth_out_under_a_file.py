"""`slides synth --out FILE/sub` (--out below a file: a typo'd path) ended in a NotADirectoryError traceback; it
exits 2 with one line naming --out and why, before anything is written."""
from __future__ import annotations

from support.cli import run_cli


def test_slides_synth_out_below_a_file_is_a_clear_error_not_a_traceback(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    out = tmp_path / "afile" / "sub"
    code, _, err = run_cli(["slides", "synth", "--per-class", "1", "--size", "1024", "--out", str(out)])
    assert code == 2
    assert f"cannot write the synthetic slides to {out}" in err and "Not a directory" in err
    assert "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "not a folder"
