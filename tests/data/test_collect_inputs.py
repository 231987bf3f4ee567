"""What `shards build` reads from a patch folder or CSV is what the user has: rows, files and labels are neither
invented, dropped nor crossed without a word.

Found by trying the tool on real folders: a CSV row with a missing field was a traceback (`'NoneType' object has no
attribute 'strip'`); Excel's blank `,,` rows were refused as `.: invalid key ''` without a row number; a folder read
through its labels.csv ignored the images the file does not list and a label that contradicts the image's class
folder; macOS `._x.png` files and `.ipynb_checkpoints/` copies were read as patches; and when two paths clean to
one sample key, which one got the plain key depended on the row order."""
from __future__ import annotations

import logging

import pytest
from support.shards import write_patch_folder

from mmlnb_dist.cli import main
from mmlnb_dist.data.collect import collect_samples
from mmlnb_dist.data.shardset import ShardError

CLASSES = ["UD", "PD", "D"]


def _csv(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_row_with_a_missing_field_is_named_by_its_line(tmp_path, capsys):
    write_patch_folder(tmp_path, per_class=2)
    csv_path = _csv(tmp_path / "list.csv", ["path,label,slide_id", "UD/UD_000.png,UD,s1", "PD/PD_000.png",
                                            "D/D_000.png,D,s3"])
    with pytest.raises(ShardError, match=r"list\.csv line 3: no label"):
        collect_samples(csv_path, CLASSES)
    assert main(["shards", "build", "--input", str(csv_path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "line 3: no label" in capsys.readouterr().err


def test_blank_rows_are_skipped_and_counted(tmp_path, caplog):
    write_patch_folder(tmp_path, per_class=2)
    csv_path = _csv(tmp_path / "list.csv", ["path,label,slide_id", "UD/UD_000.png,UD,s1", ",,", "",
                                            "D/D_000.png,D,s3", " , , "])
    with caplog.at_level(logging.WARNING):
        samples = collect_samples(csv_path, CLASSES)
    assert [s.meta["file"] for s in samples] == ["UD/UD_000.png", "D/D_000.png"]
    assert "2 blank rows" in caplog.text and "lines 3, 6" in caplog.text


def test_a_folder_read_through_its_labels_csv_names_the_images_it_leaves_out_and_crossed_labels(tmp_path, caplog):
    write_patch_folder(tmp_path, per_class=3)
    _csv(tmp_path / "labels.csv", ["path,label,slide_id", "UD/UD_000.png,D,s1", "UD/UD_001.png,UD,s1",
                                   "PD/PD_000.png,PD,s2", "D/D_000.png,D,s3"])
    with caplog.at_level(logging.WARNING):
        samples = collect_samples(tmp_path, CLASSES)
    assert len(samples) == 4
    assert "5 images under" in caplog.text and "labels.csv does not list" in caplog.text
    assert "D/D_001.png" in caplog.text
    assert "1 row" in caplog.text and "UD/UD_000.png" in caplog.text and "labelled D" in caplog.text


def test_hidden_files_are_not_patches(tmp_path):
    write_patch_folder(tmp_path, per_class=2)
    (tmp_path / "UD" / "._UD_000.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / "PD" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "PD" / ".ipynb_checkpoints" / "PD_000-checkpoint.png").write_bytes(
        (tmp_path / "PD" / "PD_000.png").read_bytes())
    files = sorted(s.meta["file"] for s in collect_samples(tmp_path, CLASSES))
    assert files == sorted(f"{c}/{c}_00{i}.png" for c in CLASSES for i in range(2))


def test_sample_keys_do_not_depend_on_the_row_order(tmp_path):
    write_patch_folder(tmp_path, per_class=1)
    for name in ("a b.png", "a_b.png"):
        (tmp_path / "UD" / name).write_bytes((tmp_path / "UD" / "UD_000.png").read_bytes())
    rows = ["UD/a b.png,UD,s1", "UD/a_b.png,UD,s2", "PD/PD_000.png,PD,s3", "D/D_000.png,D,s4"]
    forward = collect_samples(_csv(tmp_path / "f.csv", ["path,label,slide_id", *rows]), CLASSES)
    backward = collect_samples(_csv(tmp_path / "b.csv", ["path,label,slide_id", *reversed(rows)]), CLASSES)
    keys = {s.meta["file"]: s.key for s in forward}
    assert keys == {s.meta["file"]: s.key for s in backward}
    assert len(set(keys.values())) == 4


def test_windows_paths_in_a_csv_are_read(tmp_path):
    """A patches CSV written on Windows names `UD\\UD_000.png`: the backslash was part of a file name here, so
    every row was "image file not found" (the descriptions reader already took backslashes)."""
    write_patch_folder(tmp_path, per_class=1)
    rows = [f"{c}\\{c}_000.png,{c},s{i}" for i, c in enumerate(CLASSES)]
    samples = collect_samples(_csv(tmp_path / "win.csv", ["path,label,slide_id", *rows]), CLASSES)
    assert [s.meta["file"] for s in samples] == [f"{c}/{c}_000.png" for c in CLASSES]
    assert all(s.image.is_file() for s in samples)


def test_a_class_folder_spelt_in_another_case_is_refused_with_the_class_it_means(tmp_path):
    # `ud/` for UD (a folder renamed on a case-insensitive disk): the refusal named the folder but not the class it
    # meant nor how to go on (the CSV path has said "did you mean" for a label)
    write_patch_folder(tmp_path, per_class=1, classes=("ud", "PD", "D"))
    with pytest.raises(ShardError, match=r"unknown label folder 'ud'.*did you mean 'UD'\?.*--classes"):
        collect_samples(tmp_path, CLASSES)
