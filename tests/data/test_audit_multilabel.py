"""Mutation audit of the multi-label CSV reader (`data.multilabel`): label cells parsed with the configured
separator (blanks, spaces, JSON lists), the vocabulary's order and the multi-hot index, labels outside a given
vocabulary, `max_labels` and `min_frequency` boundaries, label merge files, and the counts reported."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.data.config import BuildConfig, MultiLabelConfig
from mmlnb_dist.data.multilabel import build_multilabel_shards, load_label_merge, parse_label_cell, read_multilabel_csv
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardError

from support.shards import write_pairs_csv


def test_label_cells_split_on_the_separator_with_blanks_and_spaces_removed():
    """Spaces around names are trimmed, empty names (`A||B`, a trailing separator) dropped; only the configured
    separator splits; a JSON list is read as a list (blank entries dropped), a malformed one as plain text."""
    assert parse_label_cell(" Necrosis || Fat |", "|") == ["Necrosis", "Fat"]
    assert parse_label_cell("a;b|c", ";") == ["a", "b|c"]
    assert parse_label_cell('  ["x y", " ", "z"]', "|") == ["x y", "z"]
    assert parse_label_cell('["a", "b"', ",") == ['["a"', '"b"']
    assert parse_label_cell("  ", "|") == [] and parse_label_cell(None, "|") == []


def test_a_row_with_only_blank_labels_is_dropped_and_no_empty_class_appears(tmp_path):
    """`|` or `[""]` is no label: the row is dropped as "no labels", and no class named "" is made."""
    path = write_pairs_csv(tmp_path, ["A|B", " | ", '[""]', "B||A"])
    got = read_multilabel_csv(path, MultiLabelConfig())
    assert got.classes == ["A", "B"]
    assert [(d["row"], d["reason"]) for d in got.dropped] == [(2, "no labels"), (3, "no labels")]
    assert [s.meta["labels"] for s in got.samples] == [["A", "B"], ["A", "B"]]


def test_a_given_vocabulary_keeps_its_order_and_indexes_the_multi_hot_vector(tmp_path):
    """With `classes` given (not sorted), each sample's labels and its `multi_hot` follow that order; a label
    outside it drops the row naming the label; a class no kept row holds is counted 0."""
    path = write_pairs_csv(tmp_path, ["b|z", "a", "z|q", "z"])
    vocab = ["z", "b", "a", "unused"]
    got = read_multilabel_csv(path, MultiLabelConfig(), classes=vocab)
    assert got.classes == vocab
    assert [(d["row"], d["reason"]) for d in got.dropped] == [(3, "labels outside the vocabulary after merging: q")]
    assert [s.meta["labels"] for s in got.samples] == [["z", "b"], ["a"], ["z"]]
    assert [s.label for s in got.samples] == ["z", "a", "z"]  # the primary label: first in vocabulary order
    assert got.label_counts == {"z": 2, "b": 1, "a": 1, "unused": 0}
    manifest = build_multilabel_shards(path, tmp_path / "shards", BuildConfig(
        val_fraction=0.0, test_fraction=0.0, image_format="png", image_size=16), MultiLabelConfig(), classes=vocab,
        progress=False)
    assert manifest["classes"] == vocab
    hot = {}
    for entry in manifest["splits"]["train"]["shards"]:
        for s in iter_shard_samples(tmp_path / "shards" / entry["file"]):
            meta = json.loads(s["json"])
            hot[meta["row"]] = meta["multi_hot"]
            assert int(s["cls"]) == vocab.index(meta["labels"][0])
    assert hot == {1: [1, 1, 0, 0], 2: [0, 0, 1, 0], 4: [1, 0, 0, 0]}


def test_max_labels_keeps_a_row_with_exactly_that_many(tmp_path):
    path = write_pairs_csv(tmp_path, ["a|b", "a|b|c", "c"])
    got = read_multilabel_csv(path, MultiLabelConfig(max_labels=2))
    assert [d["row"] for d in got.dropped] == [2]
    assert [s.meta["labels"] for s in got.samples] == [["a", "b"], ["c"]]


def test_min_frequency_counts_only_rows_that_are_kept(tmp_path):
    """`rare` appears on 3 rows but one of them is dropped (empty text): on 2 kept rows it is under
    min_frequency=3 and removed; a row holding only it is then dropped. A label on exactly 3 kept rows stays."""
    path = write_pairs_csv(tmp_path, ["rare|ok", "rare", "ok", "ok", "ok|rare"], texts={4: " "})
    got = read_multilabel_csv(path, MultiLabelConfig(min_frequency=3))
    assert got.classes == ["ok"]
    assert [(d["row"], d["reason"]) for d in got.dropped] == [
        (2, "no label left after min_frequency=3 (removed: rare)"), (5, "empty text")]
    assert got.label_counts == {"ok": 3}


def test_a_rare_class_of_a_given_vocabulary_is_left_out_of_it(tmp_path):
    """min_frequency removes a class from a given vocabulary too: no class index without a sample."""
    path = write_pairs_csv(tmp_path, ["a", "a|b", "a"])
    got = read_multilabel_csv(path, MultiLabelConfig(min_frequency=2), classes=["b", "a"])
    assert got.classes == ["a"]
    assert got.label_counts == {"a": 3}


def test_an_absolute_image_path_is_read_as_it_is(tmp_path):
    path = write_pairs_csv(tmp_path / "csv", ["a", "b"], images={1: str(tmp_path / "csv" / "img" / "p1.png")})
    (tmp_path / "other").mkdir()
    moved = path.rename(tmp_path / "other" / "pairs.csv")  # relative rows now miss; the absolute one does not
    got = read_multilabel_csv(moved, MultiLabelConfig())
    assert [(d["row"], d["reason"]) for d in got.dropped] == [(1, "image file not found")]
    assert [s.meta["labels"] for s in got.samples] == [["b"]]


def test_merge_file_takes_a_single_name_and_refuses_one_source_under_two_targets(tmp_path):
    (tmp_path / "one.yaml").write_text("Immune: Immunology\nFat: [adipose, fat]\n")
    assert load_label_merge(tmp_path / "one.yaml") == {"Immunology": "Immune", "adipose": "Fat", "fat": "Fat"}
    (tmp_path / "two.yaml").write_text("Immune: [Immunology]\nOther: [Immunology]\n")
    with pytest.raises(ShardError, match="'Immunology' is merged into both 'Immune' and 'Other'"):
        load_label_merge(tmp_path / "two.yaml")


def test_merged_duplicates_count_once(tmp_path):
    """Two sources of one target in one cell are one label: counted once, and not over max_labels."""
    path = write_pairs_csv(tmp_path, ["Immunology|Immunopathology|Fat", "Fat"])
    (tmp_path / "merge.yaml").write_text("Immune: [Immunology, Immunopathology]\n")
    got = read_multilabel_csv(path, MultiLabelConfig(label_merge=tmp_path / "merge.yaml", max_labels=2))
    assert not got.dropped
    assert got.samples[0].meta["labels"] == ["Fat", "Immune"]
    assert got.label_counts == {"Fat": 2, "Immune": 1}


def test_the_split_group_defaults_to_slide_id_then_patient_id(tmp_path):
    """Without `group_column`, a `slide_id` column (else `patient_id`) groups the rows; a blank cell is no group."""
    (tmp_path / "img").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img" / "a.png")
    (tmp_path / "both.csv").write_text("image,text,labels,patient_id,slide_id\n"
                                       "img/a.png,t,A,P1,S1\nimg/a.png,t,A,P2, \n")
    got = read_multilabel_csv(tmp_path / "both.csv", MultiLabelConfig())
    assert [s.slide_id for s in got.samples] == ["S1", None]
    (tmp_path / "patient.csv").write_text("image,text,labels,patient_id\nimg/a.png,t,A,P1\n")
    assert read_multilabel_csv(tmp_path / "patient.csv", MultiLabelConfig()).samples[0].slide_id == "P1"
    chosen = read_multilabel_csv(tmp_path / "both.csv", MultiLabelConfig(group_column="patient_id"))
    assert [s.slide_id for s in chosen.samples] == ["P1", "P2"]


def test_a_repeated_image_gets_a_key_no_other_image_holds(tmp_path):
    """Rows 1 and 3 name `img/a.png`, row 2 `img/a-r3.png`: row 3's key (`img_a-r3`, the image key and its row)
    was row 2's own key, and the build refused the CSV as "duplicate key". Every row now gets its own key."""
    (tmp_path / "img").mkdir()
    for name, value in (("a", 1), ("a-r3", 2)):
        Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(tmp_path / "img" / f"{name}.png")
    (tmp_path / "p.csv").write_text("image,text,labels\nimg/a.png,one,A\nimg/a-r3.png,two,B\nimg/a.png,three,A\n")
    got = read_multilabel_csv(tmp_path / "p.csv", MultiLabelConfig())
    keys = [s.key for s in got.samples]
    assert keys[:2] == ["img_a", "img_a-r3"] and len(set(keys)) == 3
    manifest = build_multilabel_shards(tmp_path / "p.csv", tmp_path / "shards", BuildConfig(
        val_fraction=0.0, test_fraction=0.0, image_format="png", image_size=16), MultiLabelConfig(), progress=False)
    assert manifest["splits"]["train"]["num_samples"] == 3
