"""Slides kept one folder per site or patient (`wsi/site-A/S1.svs`), as many cohorts are: `--slides wsi` reads the
folder's top level only, and said `no slide files` (or, for a labelled slide in a subfolder, `no slide file`) with
no word of the slides it had passed over. Both messages now name the subfolder files and the way to tile them (a
CSV with a 'path' column)."""
from __future__ import annotations

import pytest

from mmlnb_dist.slides.inputs import TilingInputError, check_input_paths, find_slides, match_inputs

CLASSES = ["UD", "PD", "D"]


def test_a_folder_whose_slides_are_all_in_subfolders_says_where_they_are(tmp_path):
    for site in ("site-A", "site-B"):
        (tmp_path / "wsi" / site).mkdir(parents=True)
        (tmp_path / "wsi" / site / f"{site}-1.svs").write_bytes(b"x")
    (tmp_path / "labels.csv").write_text("slide_id,label\nsite-A-1,UD\n")
    with pytest.raises(TilingInputError) as err:
        check_input_paths(tmp_path / "wsi", tmp_path / "labels.csv", tmp_path / "out")
    message = str(err.value)
    assert "no slide files" in message and "subfolder" in message and "'path' column" in message, message
    assert "site-A/site-A-1.svs" in message and "site-B/site-B-1.svs" in message, message


def test_an_empty_folder_still_says_only_no_slide_files(tmp_path):
    (tmp_path / "wsi" / "notes").mkdir(parents=True)
    (tmp_path / "wsi" / "notes" / "readme.txt").write_text("x")
    (tmp_path / "labels.csv").write_text("slide_id,label\nS1,UD\n")
    with pytest.raises(TilingInputError, match="no slide files") as err:
        check_input_paths(tmp_path / "wsi", tmp_path / "labels.csv", tmp_path / "out")
    assert "subfolder" not in str(err.value)


def test_a_labelled_slide_in_a_subfolder_is_named_in_its_problem(tmp_path):
    (tmp_path / "wsi" / "batch2").mkdir(parents=True)
    (tmp_path / "wsi" / "S1.svs").write_bytes(b"x")
    (tmp_path / "wsi" / "batch2" / "S2.svs").write_bytes(b"y")
    usable, problems = match_inputs(find_slides(tmp_path / "wsi"), {"S1": "UD", "S2": "PD", "S3": "D"}, CLASSES,
                                    folder=tmp_path / "wsi")
    assert list(usable) == ["S1"]
    errors = {p["slide_id"]: p["error"] for p in problems}
    assert "batch2/S2.svs" in errors["S2"] and "subfolder" in errors["S2"], errors
    assert errors["S3"] == "named in the label file, no slide file"
