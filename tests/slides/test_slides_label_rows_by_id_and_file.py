"""A label file that names one slide twice, once by its id (`S1`) and once by its file name (`S1.svs`)."""
from __future__ import annotations

from mmlnb_dist.slides.inputs import match_inputs


def test_two_rows_with_one_label_for_one_slide_are_one_slide(tmp_path):
    """`S1,UD` and `S1.svs,UD` say the same: S1 is tiled as UD and no row is a problem (it was reported as a
    `missing_slide` 'no slide file' while S1.svs was right there, and the run exited 1)."""
    (tmp_path / "S1.svs").write_bytes(b"x")
    usable, problems = match_inputs({"S1": tmp_path / "S1.svs"}, {"S1": "UD", "S1.svs": "UD"}, ["UD", "PD"])
    assert {k: v[1] for k, v in usable.items()} == {"S1": "UD"}
    assert problems == []


def test_two_rows_with_two_labels_for_one_slide_name_the_conflict(tmp_path):
    """`S1,UD` and `S1.svs,PD`: the file-name row's problem says it names S1's file and which labels disagree,
    not 'no slide file' (the file exists: the user would look for a missing file)."""
    (tmp_path / "S1.svs").write_bytes(b"x")
    _, problems = match_inputs({"S1": tmp_path / "S1.svs"}, {"S1": "UD", "S1.svs": "PD"}, ["UD", "PD"])
    assert len(problems) == 1
    error = problems[0]["error"]
    assert "no slide file" not in error
    assert "'S1'" in error and "'UD'" in error and "'PD'" in error


def test_a_row_naming_the_file_with_its_suffix_in_another_case_labels_it(tmp_path):
    """`S1.svs` in the label file for the scanner's `S1.SVS` (and `S2.TIF` for `S2.tif`): the suffix's case is no
    part of the name a user means; it was `unlabelled` plus a `missing_slide` 'no slide file'."""
    for name in ("S1.SVS", "S2.tif"):
        (tmp_path / name).write_bytes(b"x")
    found = {"S1": tmp_path / "S1.SVS", "S2": tmp_path / "S2.tif"}
    usable, problems = match_inputs(found, {"S1.svs": "UD", "S2.TIF": "PD"}, ["UD", "PD"])
    assert {k: v[1] for k, v in usable.items()} == {"S1": "UD", "S2": "PD"}
    assert problems == []
