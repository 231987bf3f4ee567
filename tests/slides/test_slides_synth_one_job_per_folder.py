"""`slides synth` holds its output folder for the whole job, as `data synth` does: a second generator into the
same folder stops at once naming the holder, instead of writing its slides beside the first job's (and its
labels.csv over theirs, or removing the first job's slides as "an earlier run's extras")."""
from __future__ import annotations

from mmlnb_dist.cli import main
from mmlnb_dist.core.runlock import FolderLock


def test_a_second_slides_synth_into_a_held_folder_is_refused_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "wsi"
    argv = ["slides", "synth", "--out", str(out), "--per-class", "1", "--size", "1024"]
    with FolderLock(out, "slides synth"):  # the first job, still writing
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "wsi is in use by `slides synth`" in err, err
        assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == []
    assert main(argv) == 0  # once it has finished, the folder is free again
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "labels.csv", "synth-D-0.tif", "synth-PD-0.tif", "synth-UD-0.tif"]
