"""Audit of `DescriptionTable` (mutation audit): which descriptions files are refused when read, how rows name
their images (Windows paths, stems, one file reached by two paths) and what an empty slide id cell means."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.data.description_table import DescriptionsError, DescriptionTable


def _patches(root, rels):
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(root / rel)
    return root


def _texts(table, rows):
    return [table.description(r) if r is not None else None for r in rows]


def test_a_file_without_an_image_column_or_a_named_slide_column_or_text_on_every_row_is_refused(tmp_path):
    (tmp_path / "no_id.csv").write_text("name,description\na.png,text\n")
    with pytest.raises(DescriptionsError, match="no column names the images"):
        DescriptionTable.read(tmp_path / "no_id.csv")
    (tmp_path / "d.csv").write_text("file,description\na.png,text\n")
    with pytest.raises(DescriptionsError, match="no 'patient' column"):
        DescriptionTable.read(tmp_path / "d.csv", slide_column="patient")
    (tmp_path / "d.jsonl").write_text(json.dumps({"file": "a.png", "description": "a"}) + "\n"
                                      + json.dumps({"file": "b.png", "text": "b"}) + "\n")
    with pytest.raises(DescriptionsError, match="no 'description' column"):
        DescriptionTable.read(tmp_path / "d.jsonl")
    assert DescriptionTable.read(tmp_path / "d.jsonl", require_text=False).rows[1]["text"] == "b"


def test_the_same_row_written_twice_is_accepted(tmp_path):
    """Only two rows naming one image with *different* texts are ambiguous; a repeated row is not."""
    src = _patches(tmp_path, ["UD/a.png"])
    (src / "d.csv").write_text("file,description\nUD/a.png,same text\nUD/a.png,same text\n")
    table = DescriptionTable.read(src / "d.csv")
    assert _texts(table, table.match([("UD_a", src / "UD" / "a.png")])) == ["same text"]


def test_an_empty_slide_id_cell_is_no_slide(tmp_path):
    """An empty cell must not become the slide "" (one slide holding every patch without a slide id)."""
    (tmp_path / "d.csv").write_text("file,description,slide_id\na.png,x,\nb.png,y,S7\n")
    table = DescriptionTable.read(tmp_path / "d.csv")
    assert [table.slide_id(r) for r in table.rows] == [None, "S7"]


def test_a_row_written_with_windows_separators_names_its_image(tmp_path):
    src = _patches(tmp_path / "src", ["UD/S1/p1.png", "PD/S2/p1.png"])
    (src / "d.csv").write_text("file,description\nUD\\S1\\p1.png,ud text\nPD\\S2\\p1.png,pd text\n")
    table = DescriptionTable.read(src / "d.csv")
    rows = table.match([("b", src / "PD" / "S2" / "p1.png"), ("a", src / "UD" / "S1" / "p1.png")])
    assert _texts(table, rows) == ["pd text", "ud text"]


def test_a_row_naming_the_stem_of_one_image_is_matched(tmp_path):
    src = _patches(tmp_path / "src", ["UD/a1.png", "PD/b2.png"])
    (tmp_path / "d.csv").write_text("key,description\na1,stem text\n")
    table = DescriptionTable.read(tmp_path / "d.csv")
    rows = table.match([("UD_a1", src / "UD" / "a1.png"), ("PD_b2", src / "PD" / "b2.png")])
    assert _texts(table, rows) == ["stem text", None]


def test_one_image_given_twice_by_a_link_gets_its_row_both_times(tmp_path):
    """A row's path is the tail of two paths that resolve to one file: one image, one text, nothing ambiguous."""
    src = _patches(tmp_path / "src", ["A/S1/p1.png"])
    (tmp_path / "src" / "B").symlink_to(src / "A")
    (tmp_path / "d.csv").write_text("file,description\nS1/p1.png,the text\n")
    table = DescriptionTable.read(tmp_path / "d.csv")
    rows = table.match([("a", src / "A" / "S1" / "p1.png"), ("b", src / "B" / "S1" / "p1.png")])
    assert _texts(table, rows) == ["the text", "the text"]


def test_a_row_without_text_gives_no_description_not_the_word_none(tmp_path):
    """A CSV row with fewer fields than the header, or a JSONL `"description": null`, gave the text "None": the
    build stored it as the patch's description (trained on as words) and predict scored the image with it instead
    of refusing an image without a description. Such a row (and an empty or blank cell) gives no text; the row
    still names its image."""
    from support.shards import CLASSES, write_patch_folder

    from mmlnb_dist.data.collect import collect_samples

    src = write_patch_folder(tmp_path / "src", per_class=2, size=16)
    (tmp_path / "d.csv").write_text("file,description\nUD/UD_000.png\nPD/PD_000.png,\nD/D_000.png,  \n"
                                    "UD/UD_001.png,real text\n")
    (tmp_path / "d.jsonl").write_text(json.dumps({"file": "UD/UD_000.png", "description": None}) + "\n"
                                      + json.dumps({"file": "UD/UD_001.png", "description": "real text"}) + "\n")
    for descs in ("d.csv", "d.jsonl"):
        table = DescriptionTable.read(tmp_path / descs)
        assert [table.description(r) for r in table.rows][:-1] == [None] * (len(table.rows) - 1), descs
        got = {s.meta["file"]: s.description for s in collect_samples(src, CLASSES, descriptions=tmp_path / descs)}
        assert got["UD/UD_001.png"] == "real text"
        assert {f: t for f, t in got.items() if f != "UD/UD_001.png"} == dict.fromkeys(set(got) - {"UD/UD_001.png"})
