"""A `--mask-dir` that gives no slide being tiled a mask (the wrong folder, masks not exported yet) is named in a
warning: every slide's tissue is then detected automatically, and nothing said the corrected masks went unused."""
from __future__ import annotations

import logging

from mmlnb_dist.slides.inputs import check_mask_dir


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_mask_dir_with_no_mask_for_any_slide_is_warned_about(tmp_path, caplog):
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "readme.txt").write_text("to do")
    with caplog.at_level(logging.WARNING):
        check_mask_dir(tmp_path / "masks", ["S1", "S2"])
    (message,) = _warnings(caplog)
    assert str(tmp_path / "masks") in message and "none of the 2 slide(s)" in message, message


def test_a_mask_dir_with_a_mask_for_some_slide_is_quiet(tmp_path, caplog):
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "S1.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    with caplog.at_level(logging.WARNING):
        check_mask_dir(tmp_path / "masks", ["S1", "S2"])
    assert _warnings(caplog) == []
