"""`slides synth` stopped mid-slide (Ctrl-C) leaves its own `synth-<class>-<k>.tif.partial`; the rerun refused the
folder as holding files it did not write. The leftover is now its own: the rerun goes on and removes it."""
from __future__ import annotations

from support.cli import run_cli


def test_a_rerun_after_an_interrupted_synth_removes_its_partial_slide(tmp_path):
    out = tmp_path / "wsi"
    out.mkdir()
    (out / "synth-UD-0.tif.partial").write_bytes(b"II*\0half a slide")
    (out / "synth-PD-7.tif.partial").write_bytes(b"II*\0")  # of an earlier, larger --per-class
    code, _, err = run_cli(["slides", "synth", "--per-class", "1", "--size", "1024", "--out", str(out)])
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "labels.csv", "synth-D-0.tif", "synth-PD-0.tif", "synth-UD-0.tif"]


def test_other_files_are_still_refused(tmp_path):
    out = tmp_path / "wsi"
    out.mkdir()
    (out / "notes.partial").write_text("mine")
    code, _, err = run_cli(["slides", "synth", "--per-class", "1", "--size", "1024", "--out", str(out)])
    assert code == 2 and "notes.partial" in err, err
