"""Descriptions attached at `shards build`: matched to the inputs by path, every ambiguity refused by name and
every row or input left without a partner counted, because a description on the wrong patch trains the text
branch on another patch's words and nothing downstream can tell."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.cli import main
from mmlnb_dist.data.collect import collect_samples
from mmlnb_dist.data.shardset import ShardError

CLASSES = ["UD", "PD", "D"]


def _patches(root, rels):
    rng = np.random.default_rng(0)
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / rel)
    return root


def _jsonl(path, rows):
    path.write_text("".join(json.dumps({"file": f, "description": d}) + "\n" for f, d in rows))
    return path


def _by_file(samples):
    return {s.meta["file"]: s.description for s in samples}


def test_a_patch_gets_the_row_of_its_own_slide_when_another_slide_has_a_patch_of_that_name(tmp_path):
    # Descriptions written per slide (S1/p1.png, S2/p1.png), inputs in class folders: the name p1.png is unique
    # among the inputs, but two rows carry it. The old name fallback took whichever row came last (S2's).
    src = _patches(tmp_path / "src", ["UD/S1/p1.png", "PD/S3/p2.png", "D/S4/p3.png"])
    descs = _jsonl(tmp_path / "d.jsonl", [("S1/p1.png", "slide one"), ("S2/p1.png", "slide two"),
                                          ("S3/p2.png", "three"), ("S4/p3.png", "four")])
    got = _by_file(collect_samples(src, CLASSES, descriptions=descs))
    assert got == {"UD/S1/p1.png": "slide one", "PD/S3/p2.png": "three", "D/S4/p3.png": "four"}


def test_a_bare_name_two_rows_carry_is_refused_instead_of_picked(tmp_path):
    src = _patches(tmp_path / "src", ["UD/p1.png", "PD/x.png", "D/y.png"])
    descs = _jsonl(tmp_path / "d.jsonl", [("S1/p1.png", "slide one"), ("S2/p1.png", "slide two")])
    with pytest.raises(ShardError, match=r"p1\.png") as err:
        collect_samples(src, CLASSES, descriptions=descs)
    assert "2 rows" in str(err.value) and "d.jsonl" in str(err.value)


def test_one_file_described_twice_with_different_text_is_refused(tmp_path):
    src = _patches(tmp_path / "src", ["UD/a.png", "PD/b.png", "D/c.png"])
    descs = _jsonl(tmp_path / "d.jsonl", [("UD/a.png", "first"), ("PD/b.png", "b"), ("UD/a.png", "second")])
    with pytest.raises(ShardError, match=r"UD/a\.png"):
        collect_samples(src, CLASSES, descriptions=descs)


def test_a_descriptions_file_that_names_no_input_is_refused(tmp_path):
    # e.g. written for another copy of the data with other file names: the old code built shards without text
    src = _patches(tmp_path / "src", ["UD/a.png", "PD/b.png", "D/c.png"])
    descs = _jsonl(tmp_path / "d.jsonl", [("tiles/0001.png", "x"), ("tiles/0002.png", "y")])
    with pytest.raises(ShardError) as err:
        collect_samples(src, CLASSES, descriptions=descs)
    text = str(err.value)
    assert "not one of its 2 rows names an input" in text and "tiles/0001.png" in text and "UD/a.png" in text


def test_rows_and_inputs_without_a_partner_are_counted(tmp_path, caplog):
    src = _patches(tmp_path / "src", ["UD/a.png", "PD/b.png", "D/c.png"])
    descs = _jsonl(tmp_path / "d.jsonl", [("UD/a.png", "a"), ("PD/b.png", "b"), ("gone/z.png", "z")])
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.data.collect"):
        got = _by_file(collect_samples(src, CLASSES, descriptions=descs))
    assert got == {"UD/a.png": "a", "PD/b.png": "b", "D/c.png": None}
    assert "2 of 3 inputs" in caplog.text and "1 row" in caplog.text and "gone/z.png" in caplog.text


def test_a_bad_line_is_named_with_its_number(tmp_path):
    src = _patches(tmp_path / "src", ["UD/a.png", "PD/b.png", "D/c.png"])
    descs = tmp_path / "d.jsonl"
    descs.write_text(json.dumps({"file": "UD/a.png", "description": "a"}) + "\n{not json\n")
    with pytest.raises(ShardError, match=r"d\.jsonl:2"):
        collect_samples(src, CLASSES, descriptions=descs)


def test_shards_build_reports_the_refusal_and_writes_nothing(tmp_path, capsys):
    src = _patches(tmp_path / "src", ["UD/S1/p1.png", "PD/S2/p1.png", "D/S3/p2.png"])
    _jsonl(src / "descriptions.jsonl", [("p1.png", "which one?"), ("S3/p2.png", "fine")])
    out = tmp_path / "sh"
    assert main(["shards", "build", "--input", str(src), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "p1.png" in err and "UD/S1/p1.png" in err and "PD/S2/p1.png" in err
    assert not out.exists()


def test_a_csv_description_the_file_replaces_with_other_text_is_counted(tmp_path, caplog):
    src = _patches(tmp_path / "src", ["UD/a.png", "PD/b.png", "D/c.png"])
    (src / "labels.csv").write_text("path,label,description\nUD/a.png,UD,from the csv\nPD/b.png,PD,same\n"
                                    "D/c.png,D,kept\n")
    descs = _jsonl(tmp_path / "d.jsonl", [("UD/a.png", "from the file"), ("PD/b.png", "same")])
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.data.collect"):
        got = _by_file(collect_samples(src, CLASSES, descriptions=descs))
    assert got == {"UD/a.png": "from the file", "PD/b.png": "same", "D/c.png": "kept"}
    assert "1 input's own description (the CSV's description column) replaced" in caplog.text, caplog.text
    assert "UD/a.png" in caplog.text


@pytest.mark.parametrize("order", ["path first", "name first"])
def test_a_row_that_names_its_patch_by_path_is_not_given_to_another_patch_of_that_name(tmp_path, order):
    # Patch names repeat across class or slide folders (UD/001.png, PD/001.png) and a file may describe only some
    # patches: the row for UD/001.png matched UD/001.png by path and PD/001.png by its bare name, so a PD patch
    # trained with a UD description. A row one input names by path belongs to that input alone, whatever the order.
    rels = ["UD/001.png", "PD/001.png", "D/d1.png"]
    if order == "name first":
        rels[:2] = rels[1::-1]
    src = _patches(tmp_path / "src", rels)
    descs = _jsonl(tmp_path / "d.jsonl", [("UD/001.png", "UD: sheets of small round blue cells")])
    got = _by_file(collect_samples(src, CLASSES, descriptions=descs))
    assert got == {"UD/001.png": "UD: sheets of small round blue cells", "PD/001.png": None, "D/d1.png": None}


def test_predict_gives_a_row_named_by_path_to_that_image_alone(tmp_path):
    from mmlnb_dist.data.description_table import DescriptionTable

    src = _patches(tmp_path / "src", ["PD/001.png", "UD/001.png"])
    table = DescriptionTable.read(_jsonl(src / "d.jsonl", [("UD/001.png", "ud text")]))
    rows = table.match([("PD_001", src / "PD" / "001.png"), ("UD_001", src / "UD" / "001.png")])
    assert [table.description(r) if r else None for r in rows] == [None, "ud text"]


def test_a_row_two_images_end_with_is_refused_naming_the_row_and_both_images(tmp_path):
    # `S1/p1.png` is the tail of A/S1/p1.png and of B/S1/p1.png (two sites, one slide name): each image was
    # given the row, text and slide id, so one of them was predicted with the other's description.
    from mmlnb_dist.data.description_table import DescriptionsError, DescriptionTable

    src = _patches(tmp_path / "src", ["A/S1/p1.png", "B/S1/p1.png"])
    (tmp_path / "d.csv").write_text("file,description,slide_id\nS1/p1.png,text for A,slideA\n")
    table = DescriptionTable.read(tmp_path / "d.csv")
    with pytest.raises(DescriptionsError) as err:
        table.match([("S1_p1", src / "A" / "S1" / "p1.png"), ("S1_p1", src / "B" / "S1" / "p1.png")])
    text = str(err.value)
    assert "S1/p1.png" in text and str(src / "A" / "S1" / "p1.png") in text and str(src / "B" / "S1" / "p1.png") in text


def test_a_row_that_resolves_to_one_image_is_that_images_though_another_ends_the_same(tmp_path):
    from mmlnb_dist.data.description_table import DescriptionTable

    src = _patches(tmp_path / "src", ["A/S1/p1.png", "B/S1/p1.png"])
    (src / "A" / "d.csv").write_text("file,description\nS1/p1.png,text for A\n")  # resolves to A/S1/p1.png
    table = DescriptionTable.read(src / "A" / "d.csv")
    rows = table.match([("B", src / "B" / "S1" / "p1.png"), ("A", src / "A" / "S1" / "p1.png")])
    assert [table.description(r) if r else None for r in rows] == [None, "text for A"]


def test_shards_build_refuses_a_row_two_inputs_end_with(tmp_path):
    src = _patches(tmp_path / "src", ["UD/S1/p1.png", "PD/S1/p1.png", "D/S2/p2.png"])
    descs = _jsonl(tmp_path / "d.jsonl", [("S1/p1.png", "which one?"), ("S2/p2.png", "fine")])
    with pytest.raises(ShardError) as err:
        collect_samples(src, CLASSES, descriptions=descs)
    assert "S1/p1.png" in str(err.value) and "UD/S1/p1.png" in str(err.value) and "PD/S1/p1.png" in str(err.value)
