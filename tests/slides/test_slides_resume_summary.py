"""A resumed job's summary says which slides were reused and what its seconds cover.

The rows of slides reused from the staging showed the seconds of the run that tiled them, with nothing to tell
them from the slides tiled now, and the closing line gave this run's seconds next to every slide's tiles (80 tiles
"in 0.5 s" after a resume).
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

from support.slides import tile, two_slides


def test_a_resumed_run_marks_its_reused_slides_and_says_what_its_seconds_cover(tmp_path, capsys):
    wsi = two_slides(tmp_path / "wsi")
    out = tmp_path / "shards"
    assert tile(wsi, out) == 0
    shutil.rmtree(out.with_name("shards.work") / "slides" / "PD-0")  # killed before PD-0 was staged
    capsys.readouterr()
    assert tile(wsi, out) == 0
    printed = capsys.readouterr().out
    with open(out / "qc" / "summary.csv") as f:
        rows = {r["slide_id"]: r for r in csv.DictReader(f)}
    assert rows["UD-0"]["resumed"] == "yes" and rows["PD-0"]["resumed"] == ""
    closing = printed.strip().splitlines()[-1]
    assert "this run" in closing and "1 reused slide(s)" in closing, closing
    header = printed.splitlines()[0]
    assert "resumed" in header.split()


def test_a_fresh_run_has_no_reused_slides(tmp_path, capsys):
    wsi = two_slides(tmp_path / "wsi")
    out = tmp_path / "shards"
    assert tile(wsi, out) == 0
    closing = capsys.readouterr().out.strip().splitlines()[-1]
    assert "this run" not in closing and "reused slide" not in closing
    with open(Path(out) / "qc" / "summary.csv") as f:
        assert {r["resumed"] for r in csv.DictReader(f)} == {""}
