"""CSV files saved by Excel ("CSV UTF-8": a byte-order mark before the first column's name, CRLF line ends) read
like any other. The mark used to stick to the first column's name: a patches CSV starting with `path` was refused
("found: ['label', 'slide_id', '\\ufeffpath']"), a slide labels CSV starting with `slide_id` too."""
from __future__ import annotations

from pathlib import Path

from PIL import Image


def _excel_csv(path: Path, header: str, rows) -> Path:
    path.write_text("\r\n".join([header, *rows]) + "\r\n", encoding="utf-8-sig", newline="")
    return path


def test_a_patches_csv_from_excel_builds_shards(tmp_path):
    from mmlnb_dist.data.collect import collect_samples

    rows = []
    for i, label in enumerate(["UD", "PD", "D"] * 2):
        Image.new("RGB", (8, 8)).save(tmp_path / f"p{i}.png")
        rows.append(f"p{i}.png,{label},s{i},Caption {i}")
    csv_path = _excel_csv(tmp_path / "patches.csv", "path,label,slide_id,description", rows)
    samples = collect_samples(csv_path, ["UD", "PD", "D"])
    assert [s.label for s in samples] == ["UD", "PD", "D"] * 2
    assert [s.slide_id for s in samples] == [f"s{i}" for i in range(6)]


def test_slide_lists_and_labels_from_excel_are_read(tmp_path):
    from mmlnb_dist.slides.inputs import find_slides, read_labels

    labels = read_labels(_excel_csv(tmp_path / "labels.csv", "slide_id,label", ["a,UD", "b,D"]))
    assert labels == {"a": "UD", "b": "D"}
    slides = find_slides(_excel_csv(tmp_path / "slides.csv", "path,slide_id", ["a.svs,a"]))
    assert slides == {"a": tmp_path / "a.svs"}


def test_a_descriptions_file_from_excel_is_read(tmp_path):
    from mmlnb_dist.data.description_table import DescriptionTable

    table = DescriptionTable.read(_excel_csv(tmp_path / "d.csv", "description,path", ["Sheets of cells.,a.png"]))
    assert [row["description"] for row in table.rows] == ["Sheets of cells."]


def test_a_multilabel_csv_from_excel_is_read(tmp_path):
    from mmlnb_dist.data.config import MultiLabelConfig
    from mmlnb_dist.data.multilabel import read_multilabel_csv

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    csv_path = _excel_csv(tmp_path / "m.csv", "image,text,labels", ["a.png,necrosis and fat,necrosis|fat",
                                                                   "b.png,fat,fat"])
    read = read_multilabel_csv(csv_path, MultiLabelConfig())
    assert len(read.samples) == 2


def test_semicolon_and_tab_separated_files_read_like_comma_separated_ones(tmp_path):
    """Excel in European locales saves CSV with `;` (the comma is the decimal mark); a tab-separated export is
    common too. Both used to be one column named 'path;label;slide_id'."""
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.slides.inputs import read_labels

    for i in range(3):
        Image.new("RGB", (8, 8)).save(tmp_path / f"p{i}.png")
    for sep, name in ((";", "semi"), ("\t", "tab")):
        rows = [sep.join([f"p{i}.png", label, f"s{i}"]) for i, label in enumerate(["UD", "PD", "D"])]
        samples = collect_samples(_excel_csv(tmp_path / f"{name}.csv", sep.join(["path", "label", "slide_id"]), rows),
                                  ["UD", "PD", "D"])
        assert [(s.label, s.slide_id) for s in samples] == [("UD", "s0"), ("PD", "s1"), ("D", "s2")]
        labels = read_labels(_excel_csv(tmp_path / f"{name}-labels.csv", f"slide_id{sep}label", [f"a{sep}UD"]))
        assert labels == {"a": "UD"}


def test_a_label_that_differs_from_a_class_only_in_case_is_refused_with_the_class_it_means(tmp_path):
    """Labels are matched exactly (a silent case fold could merge two classes a user keeps apart), but 'pd' for
    'PD' is named as such instead of leaving the user to compare the lists."""
    import pytest

    from mmlnb_dist.data.build import validate_samples
    from mmlnb_dist.data.collect import collect_samples

    for i in range(2):
        Image.new("RGB", (8, 8)).save(tmp_path / f"p{i}.png")
    csv_path = _excel_csv(tmp_path / "p.csv", "path,label", ["p0.png,pd", "p1.png,XX"])
    with pytest.raises(ValueError) as err:
        validate_samples(collect_samples(csv_path, ["UD", "PD", "D"]), ["UD", "PD", "D"])
    text = str(err.value)
    assert "unknown label 'pd' (classes: UD, PD, D); did you mean 'PD'?" in text, text
    assert "unknown label 'XX' (classes: UD, PD, D)\n" in text + "\n" and "'XX' (classes: UD, PD, D);" not in text
