"""A DICOM whole-slide image is a folder of `.dcm` files (one per pyramid level, label, overview): one slide.

Each `.dcm` file used to be a slide of its own (id: the file's stem), so a DICOM folder given as `--slides` was one
scan tiled once per level under as many ids (its tiles then split between train and val), and a folder of DICOM
slide folders held "no slide files".
"""
from __future__ import annotations

from pathlib import Path

from mmlnb_dist.slides.inputs import find_slides


def _dicom(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(b"\0" * 128 + b"DICM")  # (not opened here)
    return folder


def test_a_folder_of_dcm_files_is_one_slide_named_by_the_folder(tmp_path):
    s1 = _dicom(tmp_path / "S1", "1.2.3.4.dcm", "1.2.3.5.dcm", "1.2.3.6.DCM")
    assert find_slides(s1) == {"S1": s1.absolute() / "1.2.3.4.dcm"}


def test_dicom_slide_folders_under_slides_are_one_slide_each(tmp_path):
    wsi = tmp_path / "wsi"
    _dicom(wsi / "S1", "a.dcm", "b.dcm")
    _dicom(wsi / "S2", "c.dcm")
    (wsi / "notes").mkdir()
    (wsi / "S3.svs").write_bytes(b"x")
    found = find_slides(wsi)
    assert found == {"S1": wsi.absolute() / "S1" / "a.dcm", "S2": wsi.absolute() / "S2" / "c.dcm",
                     "S3": wsi.absolute() / "S3.svs"}


def test_the_tile_command_sees_one_slide_in_a_dicom_folder(tmp_path, capsys):
    from mmlnb_dist.cli import main

    s1 = _dicom(tmp_path / "S1", "1.2.3.4.dcm", "1.2.3.5.dcm", "1.2.3.6.dcm")
    (tmp_path / "labels.csv").write_text("slide_id,label\nS1,UD\n")
    code = main(["slides", "tile", "--slides", str(s1), "--labels", str(tmp_path / "labels.csv"), "--out",
                 str(tmp_path / "out"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1  # the fake files do not open: one slide failed, named by its folder
    assert "1 slide(s) with problems: S1 (failed)" in captured.err, captured.err


def test_a_slide_list_row_may_name_a_dicom_folder(tmp_path):
    import pytest

    from mmlnb_dist.slides.inputs import TilingInputError

    _dicom(tmp_path / "site" / "S1", "b.dcm", "a.dcm")
    (tmp_path / "site" / "empty").mkdir()
    (tmp_path / "list.csv").write_text("path,slide_id\nsite/S1,\n")
    assert find_slides(tmp_path / "list.csv") == {"S1": tmp_path.absolute() / "site" / "S1" / "a.dcm"}
    (tmp_path / "list.csv").write_text("path,slide_id\nsite/S1,\nsite/empty,E1\n")
    with pytest.raises(TilingInputError, match=r"row 3: path site/empty is a folder with no \.dcm files"):
        find_slides(tmp_path / "list.csv")
