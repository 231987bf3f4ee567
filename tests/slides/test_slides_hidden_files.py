"""Hidden files in a slide folder are not slides: a folder copied from macOS holds an AppleDouble `._S1.svs`
beside each `S1.svs` (and `.DS_Store`), which became slides `._S1` that failed to open, one problem per slide in
the report (and a labels row `._S1` was asked for). Patch folders already skip hidden files; so do slide folders
and the mask folder's unused-file warning now."""
from __future__ import annotations

import logging

from mmlnb_dist.slides.inputs import check_mask_dir, find_slides


def test_hidden_files_in_a_slide_folder_are_not_slides(tmp_path):
    for name in ("S1.svs", "S2.tif"):
        (tmp_path / name).write_bytes(b"slide")
    (tmp_path / "._S1.svs").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / ".hidden.ndpi").write_bytes(b"")
    assert find_slides(tmp_path) == {"S1": (tmp_path / "S1.svs").absolute(), "S2": (tmp_path / "S2.tif").absolute()}


def test_hidden_mask_files_are_not_reported_unused(tmp_path, caplog):
    (tmp_path / "S1.geojson").write_text("{}")
    (tmp_path / "._S1.geojson").write_bytes(b"\x00\x05\x16\x07")
    with caplog.at_level(logging.WARNING):
        check_mask_dir(tmp_path, ["S1"])
    assert "match no slide" not in caplog.text
    (tmp_path / "S9.geojson").write_text("{}")
    with caplog.at_level(logging.WARNING):
        check_mask_dir(tmp_path, ["S1"])
    assert "1 mask file(s) match no slide" in caplog.text and "S9.geojson" in caplog.text
