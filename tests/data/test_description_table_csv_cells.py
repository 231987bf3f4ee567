"""A descriptions CSV as people write it by hand: a row with more cells than the header (a description holding an
unquoted comma, or a quoted one after `, `) raised a TypeError from the error message itself, or cut the text at
the comma without a word; it is now refused naming the row. A header written `path, description` is named as the
cause ("spaces around the name") instead of listing columns whose spaces cannot be seen."""
from __future__ import annotations

import pytest

from mmlnb_dist.data.description_table import DescriptionsError, DescriptionTable


def test_a_spaced_header_with_a_quoted_cell_is_refused_naming_the_spaces(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('path, description\nUD/a.png, "tumour, dense"\n', encoding="utf-8")
    with pytest.raises(DescriptionsError, match=r"row 1 has 3 cells for the header's 2"):
        DescriptionTable.read(path)
    path.write_text("path, description\nUD/a.png, tumour\n", encoding="utf-8")
    with pytest.raises(DescriptionsError, match=r"no 'description' column.*column ' description' has spaces around"):
        DescriptionTable.read(path)


def test_an_unquoted_comma_in_a_description_is_refused_not_cut(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("path,description\nUD/a.png,sheets\nUD/b.png,tumour, dense\n", encoding="utf-8")
    with pytest.raises(DescriptionsError, match=r"d\.csv: row 2 has 3 cells for the header's 2.*quote"):
        DescriptionTable.read(path)
    path.write_text('path,description\nUD/a.png,sheets\nUD/b.png,"tumour, dense"\n', encoding="utf-8")
    table = DescriptionTable.read(path)
    assert [table.description(r) for r in table.rows] == ["sheets", "tumour, dense"]
