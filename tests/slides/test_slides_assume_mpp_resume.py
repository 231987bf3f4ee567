"""`--assume-mpp` on a rerun re-tiles only the slides it applies to.

The first run fails a slide with no resolution metadata and asks for `--assume-mpp`; the rerun with it used to
re-tile every slide (the option was in every slide's fingerprint), though a slide with its own resolution is tiled
the same with or without it. A slide tiled at an assumed resolution is still re-tiled when that value changes or
is dropped.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.slides import SIDE, tile, two_slides


@pytest.fixture()
def wsi(tmp_path) -> Path:
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = two_slides(tmp_path / "wsi")  # UD-0 and PD-0, with resolution metadata
    write_synthetic_slide(folder / "D-0.tif", "D", width=SIDE, height=SIDE, pool_size=3, downsamples=(1, 4),
                          seed=7, write_mpp=False)
    (folder / "labels.csv").write_text("slide_id,label\nUD-0,UD\nPD-0,PD\nD-0,D\n")
    return folder


def _results(out: Path) -> dict:
    work = out.with_name(out.name + ".work") / "slides"
    return {d.name: json.loads((d / "result.json").read_text()) for d in work.iterdir() if (d / "result.json").is_file()}


def test_assume_mpp_added_on_a_rerun_tiles_only_the_slide_without_metadata(wsi, tmp_path, capsys):
    out = tmp_path / "shards"
    assert tile(wsi, out) == 1  # D-0: no resolution
    first = _results(out)
    assert set(first) == {"UD-0", "PD-0"}
    capsys.readouterr()
    assert tile(wsi, out, "--assume-mpp", "0.5") == 0
    assert "resumed: 2 slide(s)" in capsys.readouterr().out
    second = _results(out)
    assert second["D-0"]["mpp_source"] == "assumed"
    for sid in ("UD-0", "PD-0"):  # not re-tiled: the same staged record
        assert second[sid]["seconds"] == first[sid]["seconds"] and second[sid]["mpp_source"] == "metadata"


def test_a_changed_or_dropped_assumed_resolution_re_tiles_the_slide_that_used_it(wsi, tmp_path, capsys):
    out = tmp_path / "shards"
    assert tile(wsi, out, "--assume-mpp", "0.5") == 0
    capsys.readouterr()
    assert tile(wsi, out, "--assume-mpp", "0.6") == 0
    assert "resumed: 2 slide(s)" in capsys.readouterr().out
    assert _results(out)["D-0"]["level0_mpp"] == pytest.approx(0.6)
    assert tile(wsi, out) == 1  # no --assume-mpp: D-0 has no resolution again, it is not taken from the staging
    captured = capsys.readouterr()
    assert "D-0" in captured.err and "failed" in captured.out
