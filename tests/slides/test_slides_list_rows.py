"""A slide-list CSV row without a path is refused, naming the row: an empty `path` cell made the CSV's own folder the
slide (`Path("")` joined to that folder), which then failed to open or became an unlabelled slide named after the
folder. Rows with every cell empty (the trailing ",," rows a spreadsheet writes) are not slides and are skipped."""
from __future__ import annotations

import pytest

from mmlnb_dist.slides.inputs import TilingInputError, find_slides


def test_a_row_with_an_empty_path_is_refused_naming_its_row(tmp_path):
    (tmp_path / "A.svs").write_bytes(b"slide a")
    listing = tmp_path / "slides.csv"
    listing.write_text("path,slide_id\nA.svs,A\n  ,B\n")
    with pytest.raises(TilingInputError, match=r"slides\.csv: row 3 \(slide_id 'B'\) has no path"):
        find_slides(listing)


def test_rows_with_every_cell_empty_are_skipped(tmp_path):
    (tmp_path / "A.svs").write_bytes(b"slide a")
    listing = tmp_path / "slides.csv"
    listing.write_text("path,slide_id\nA.svs,A\n,\n ,  \n")
    assert find_slides(listing) == {"A": (tmp_path / "A.svs").absolute()}
