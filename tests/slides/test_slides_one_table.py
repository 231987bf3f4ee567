"""One table passed as both `--slides` and `--labels` (path, slide_id, label), as cohort tables often are: a row
whose slide_id cell is empty names its slide by the file stem in both readings."""
from __future__ import annotations

from mmlnb_dist.slides.inputs import find_slides, match_inputs, read_labels


def test_an_empty_slide_id_cell_in_a_table_with_paths_labels_the_file_stem(tmp_path):
    """`--slides` gives the row's slide the id `S 0` (the file stem, as documented); the label reading used to
    skip the row, so the slide was reported `unlabelled`, 'not in the label file', while its label was there."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "S 0.tif").write_bytes(b"x")
    (tmp_path / "site" / "S1.tif").write_bytes(b"x")
    table = tmp_path / "cohort.csv"
    table.write_text("path,slide_id,label\nsite\\S 0.tif,,UD\nsite/S1.tif,case-1,PD\n")
    assert read_labels(table) == {"S 0": "UD", "case-1": "PD"}
    usable, problems = match_inputs(find_slides(table), read_labels(table), ["UD", "PD"])
    assert {sid: label for sid, (_, label) in usable.items()} == {"S 0": "UD", "case-1": "PD"}
    assert problems == []


def test_a_label_file_without_paths_still_skips_rows_without_a_slide_id(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("slide_id,label\na,UD\n,PD\n")
    assert read_labels(labels) == {"a": "UD"}


def test_a_folder_as_label_file_is_named_as_a_folder(tmp_path):
    """`--labels wsi/` (the slide folder, its labels.csv left off): said to be a folder, naming a CSV in it, not
    'no such file' (the folder is right there)."""
    import pytest

    from mmlnb_dist.slides.inputs import TilingInputError

    (tmp_path / "labels.csv").write_text("slide_id,label\nS1,UD\n")
    with pytest.raises(TilingInputError) as err:
        read_labels(tmp_path)
    assert "folder" in str(err.value) and "no such file" not in str(err.value) and "labels.csv" in str(err.value)


def test_a_row_with_a_path_and_no_label_stays_unlabelled(tmp_path):
    """A cohort table with a blank label for a slide not to tile: the slide is `unlabelled` (as before), not given
    the label ''."""
    (tmp_path / "S1.tif").write_bytes(b"x")
    table = tmp_path / "cohort.csv"
    table.write_text("path,slide_id,label\nS1.tif,,\n")
    assert read_labels(table) == {}
