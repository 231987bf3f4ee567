"""`evaluate --export DIR --tag TAG` printed the export's metrics as if they were the tag's: --tag names a
checkpoint, and an export has none; the pair is refused before any work, naming what to pass instead."""
from __future__ import annotations

from support.cli import run_cli


def test_a_tag_with_an_export_is_refused(tmp_path):
    export = tmp_path / "runs" / "r" / "export"
    export.mkdir(parents=True)
    code, out, err = run_cli(["evaluate", "--export", str(export), "--tag", "epoch-0001"])
    assert code == 2 and out == ""
    assert "--tag epoch-0001" in err and "--checkpoint" in err and str(tmp_path / "runs" / "r" / "checkpoints") in err
