"""A tile resolution much finer than the scan (`--mpp 0.005` on a 0.5 um/px slide: 100x upsampling, tiles of 3
level-0 pixels, millions of candidates) ran until it was out of memory. It is now a usage error before any slide
is tiled, naming the slide, its resolution and the request; up to 2x finer than the scan is still tiled (warned
about in the slide's record, as before)."""
from __future__ import annotations

import pytest

from support.slides import tile, two_slides


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    return two_slides(tmp_path_factory.mktemp("wsi"))  # synthetic scans at 0.5 um/px, no objective power


@pytest.mark.parametrize("flags, asked", [(("--mpp", "0.005"), "0.005 um/px"),
                                          (("--magnification", "2000"), "--magnification 2000")])
def test_a_request_far_finer_than_the_scan_is_refused_before_tiling(slides, tmp_path, capsys, flags, asked):
    out = tmp_path / "out"
    code = tile(slides, out, *flags)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2, last
    assert "'PD-0'" in last and "0.5 um/px" in last and asked in last and "100x" in last, last
    assert not out.exists() and not (tmp_path / "out.work" / "slides").exists()  # no slide was tiled


def test_twice_as_fine_as_the_scan_is_still_tiled(slides, tmp_path, capsys):
    assert tile(slides, tmp_path / "out", "--mpp", "0.25") == 0, capsys.readouterr().err


@pytest.mark.parametrize("flags", [("--mpp", "0.005"), ("--mask-dir", "labels.csv")])
def test_with_track_the_refusal_leaves_no_tracking_run(slides, tmp_path, capsys, flags):
    """`--track` opened its run in `<out>.work/` before these checks: the refusal left a metrics.jsonl behind."""
    flags = tuple(str(slides / f) if f == "labels.csv" else f for f in flags)
    code = tile(slides, tmp_path / "out", "--track", "tracking.backends=[stdout]", *flags)
    assert code == 2, capsys.readouterr().err
    assert not (tmp_path / "out.work").exists()
