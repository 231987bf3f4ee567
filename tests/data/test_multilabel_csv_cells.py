"""Multi-label CSVs as data tools and hands write them (defect hunt, clip4): pandas list cells with missing items,
missing markers among separated names, a header with spaces after its commas."""
from __future__ import annotations

import pandas as pd
import pytest

from mmlnb_dist.data.config import MultiLabelConfig
from mmlnb_dist.data.multilabel import parse_label_cell, read_multilabel_csv
from mmlnb_dist.data.shardset import ShardError

from support.shards import write_pairs_csv


def test_a_missing_item_of_a_pandas_list_column_is_no_label():
    """pandas writes `[\"a\", NaN]` of a list column as `['a', nan]`: the item is missing, not part of a label name
    (the cell used to fall back to plain text and make one class named `['a', nan]`)."""
    cell = pd.DataFrame({"labels": [["a", float("nan")]]}).to_csv(index=False).splitlines()[1].strip('"')
    assert cell == "['a', nan]"
    assert parse_label_cell(cell, "|") == ["a"]
    assert parse_label_cell("('b', NaN, 'c')", "|") == ["b", "c"]
    assert parse_label_cell("[nan]", "|") == []
    assert parse_label_cell("[a, b]", "|") == ["[a, b]"]  # other names still mean plain text, as before


def test_a_pandas_list_column_with_missing_items_reads_as_its_label_sets(tmp_path):
    path = write_pairs_csv(tmp_path, ["['a', nan]", "['a', 'b']", "[nan]", "b"])
    got = read_multilabel_csv(path, MultiLabelConfig())
    assert got.classes == ["a", "b"]
    assert [s.meta["labels"] for s in got.samples] == [["a"], ["a", "b"], ["b"]]
    assert [(d["row"], d["reason"]) for d in got.dropped] == [(3, "no labels")]


def test_a_missing_marker_among_separated_names_is_no_label(tmp_path):
    """Label columns joined after `astype(str)` (`df.a + "|" + df.b`, one of them missing) read `fat|nan`: the
    `nan` is a missing name, as a whole `nan` cell is, not a class named `nan` (nor `None`, `N/A`)."""
    assert parse_label_cell("fat|nan", "|") == ["fat"]
    assert parse_label_cell("None | necrosis | N/A", "|") == ["necrosis"]
    assert parse_label_cell("nanoparticles|fat", "|") == ["nanoparticles", "fat"]
    path = write_pairs_csv(tmp_path, ["fat|nan", "necrosis|nan", "nan|nan", "fat|necrosis"])
    got = read_multilabel_csv(path, MultiLabelConfig())
    assert got.classes == ["fat", "necrosis"]
    assert [s.meta["labels"] for s in got.samples] == [["fat"], ["necrosis"], ["fat", "necrosis"]]
    assert [(d["row"], d["reason"]) for d in got.dropped] == [(3, "no labels")]


def test_a_header_with_spaces_after_the_commas_is_named_as_the_cause(tmp_path):
    """`image, text, labels` (a hand-written header) has the columns ' text' and ' labels': the error said "no column
    'text'; it has: image,  text,  labels", the spaces hard to see; now it names the spaced column."""
    path = tmp_path / "pairs.csv"
    path.write_text("image, text, labels\nimg/p0.png, a caption, a|b\n", encoding="utf-8")
    with pytest.raises(ShardError, match=r"no column 'text'.*'image', ' text', ' labels'.*column ' text' has "
                                         r"spaces around the name"):
        read_multilabel_csv(path, MultiLabelConfig())


def test_invisible_characters_around_a_label_are_trimmed_and_inside_it_refused(tmp_path):
    """`fat` + a zero-width space, or a BOM before `necrosis` (pasted from a web page or a PDF), printed as `fat` and
    `necrosis` but were classes of their own, each with part of the samples: trimmed like spaces now. One inside a
    name is refused like a case or spacing variant, the character written out in the error."""
    assert parse_label_cell("fat\u200b | \ufeffnecrosis", "|") == ["fat", "necrosis"]
    assert parse_label_cell("\u200b|fat", "|") == ["fat"]
    path = write_pairs_csv(tmp_path, ["fat|necrosis", "fat\u200b", "necrosis", "\ufeffnecrosis|fat"])
    got = read_multilabel_csv(path, MultiLabelConfig())
    assert got.classes == ["fat", "necrosis"] and got.label_counts == {"fat": 3, "necrosis": 3}
    path = write_pairs_csv(tmp_path / "inside", ["fat|necrosis", "fa\u200bt", "necrosis"])
    with pytest.raises(ShardError, match=r"differ only in case, spacing or Unicode form.*'fat' \(row 1\) and "
                                         r"'fa\\u200bt' \(row 2\)"):
        read_multilabel_csv(path, MultiLabelConfig())
