"""A descriptions file naming images by bare file name (`rgb.png`, `rgb.bmp`, `rgb.webp`: one image saved in three
formats) gives `odd/rgb.png` the row of its file name. The sample key (the stem, `rgb`) was tried first, and the
three rows it fits refused the whole prediction ("3 rows name 'rgb'"); the stem alone is still refused when
several rows carry it and the file name fits none."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.data.description_table import DescriptionsError, DescriptionTable


def _table(tmp_path, names):
    path = tmp_path / "descs.csv"
    path.write_text("file,description\n" + "".join(f"{n},text of {n}\n" for n in names))
    return DescriptionTable.read(path)


def test_the_file_name_is_tried_before_the_stem(tmp_path):
    table = _table(tmp_path, ["rgb.png", "rgb.bmp", "rgb.webp"])
    (row,) = table.match([("rgb", Path("odd/rgb.png"))])
    assert table.description(row) == "text of rgb.png"


def test_a_stem_several_rows_carry_is_still_refused(tmp_path):
    table = _table(tmp_path, ["rgb.png", "rgb.bmp"])
    with pytest.raises(DescriptionsError, match="2 rows name 'rgb'"):
        table.match([("rgb", Path("odd/rgb.tif"))])
