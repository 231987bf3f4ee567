"""Mutation-audit tests for the slide list and label inputs: which files a folder holds, the links a folder may hold,
which label row names a slide, a listed file that is gone, blank label rows, what a mask folder entry is, and what
a slide's identity (the resume fingerprint) sees of a multi-file slide."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mmlnb_dist.slides.identity import slide_identity
from mmlnb_dist.slides.inputs import (TilingInputError, check_mask_dir, find_slides, mask_path, match_inputs,
                                      read_labels)


def test_a_folder_finds_slides_whatever_the_case_of_their_extension(tmp_path):
    """Scanners write `S2.SVS` or `S3.Tif`: they are slides as `S1.svs` is; a `.txt` beside them is not."""
    for name in ("S1.svs", "S2.SVS", "S3.Tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert sorted(find_slides(tmp_path)) == ["S1", "S2", "S3"]


def test_two_links_in_a_folder_to_one_file_are_two_slides(tmp_path):
    """Only a CSV listing one file under two ids is refused; a folder's links are taken as they are named."""
    real = tmp_path / "scan.svs"
    real.write_bytes(b"x")
    folder = tmp_path / "wsi"
    folder.mkdir()
    (folder / "A.svs").symlink_to(real)
    (folder / "B.svs").symlink_to(real)
    assert sorted(find_slides(folder)) == ["A", "B"]


def test_a_label_row_naming_the_slide_id_wins_over_one_naming_its_file(tmp_path):
    """`S1` labelled UD and `S1.svs` labelled PD: the id's row is the label; the file-name row is reported as
    naming no slide, never silently moved onto S1."""
    (tmp_path / "S1.svs").write_bytes(b"x")
    usable, problems = match_inputs({"S1": tmp_path / "S1.svs"}, {"S1": "UD", "S1.svs": "PD"}, ["UD", "PD"])
    assert {k: v[1] for k, v in usable.items()} == {"S1": "UD"}
    assert [(p["slide_id"], p["status"]) for p in problems] == [("S1.svs", "missing_slide")]


def test_a_listed_slide_file_that_is_gone_is_a_missing_slide_problem(tmp_path):
    """A CSV may list a file that no longer exists: that slide is a `missing_slide` record, the rest are usable."""
    (tmp_path / "a.svs").write_bytes(b"x")
    listing = tmp_path / "slides.csv"
    listing.write_text("path\na.svs\ngone.svs\n")
    found = find_slides(listing)
    usable, problems = match_inputs(found, {"a": "UD", "gone": "PD"}, ["UD", "PD"])
    assert list(usable) == ["a"]
    assert [(p["slide_id"], p["status"]) for p in problems] == [("gone", "missing_slide")]
    assert "does not exist" in problems[0]["error"]


def test_label_rows_without_a_slide_id_are_skipped(tmp_path):
    """A spreadsheet's `,UD` or `,,` row names no slide: it is not a slide called '' (a bogus missing slide)."""
    labels = tmp_path / "labels.csv"
    labels.write_text("slide_id,label\na,UD\n,PD\n , \nb,PD\n")
    assert read_labels(labels) == {"a": "UD", "b": "PD"}


def test_a_missing_label_file_or_mask_folder_is_a_usage_error(tmp_path):
    """A mistyped `--labels` or `slides.mask_dir` is a TilingInputError naming it (exit 2), not a traceback."""
    with pytest.raises(TilingInputError, match="no such file"):
        read_labels(tmp_path / "labels.csv")
    with pytest.raises(TilingInputError, match="no such folder"):
        check_mask_dir(tmp_path / "masks", ["S1"])


def test_a_folder_named_like_a_mask_is_not_a_mask(tmp_path):
    """Only a file is a slide's mask: a folder `S1.geojson` in the mask folder leaves S1 to tissue detection."""
    (tmp_path / "S1.geojson").mkdir()
    (tmp_path / "S2.geojson").write_text("{}")
    assert mask_path(tmp_path, "S1") is None
    assert mask_path(tmp_path, "S2") == (tmp_path / "S2.geojson").absolute()


def test_a_mirax_data_file_cut_short_with_its_time_kept_changes_the_identity(tmp_path):
    """A data file copied again, truncated, with `cp -p` keeping its modification time: the size tells."""
    slide = tmp_path / "m.mrxs"
    slide.write_bytes(b"index")
    (tmp_path / "m").mkdir()
    data = tmp_path / "m" / "Data0000.dat"
    data.write_bytes(b"pixels" * 1000)
    before = slide_identity(slide)
    st = data.stat()
    data.write_bytes(b"pixels" * 10)
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert slide_identity(slide) != before


def test_a_vms_slide_identity_follows_the_image_files_its_index_names(tmp_path):
    """A Hamamatsu VMS index names its image files: a change to one of them changes the slide's identity."""
    vms = tmp_path / "s.vms"
    vms.write_text("[Virtual Microscope Specimen]\nImageFile=s.jpg\nMapFile = s_map.jpg\n")
    (tmp_path / "s.jpg").write_bytes(b"jpeg" * 100)
    (tmp_path / "s_map.jpg").write_bytes(b"map")
    before = slide_identity(vms)
    (tmp_path / "s.jpg").write_bytes(b"jpeg" * 50)
    assert slide_identity(vms) != before
    assert slide_identity(vms) == slide_identity(Path(vms))
