"""Label names in a multi-label CSV that differ only in case or spacing (`Calcification`, `calcification`) are one
label misspelled, not two: the read is refused naming both spellings and a row of each. It used to make two
classes silently. A label holding another separator character (`fat;necrosis` under the default `|`) is warned
about: the cell was most likely written with another separator."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.data.config import MultiLabelConfig
from mmlnb_dist.data.multilabel import read_multilabel_csv
from mmlnb_dist.data.shardset import ShardError

from support.shards import write_pairs_csv


def test_labels_differing_only_in_case_or_spaces_are_refused_naming_both_and_their_rows(tmp_path):
    path = write_pairs_csv(tmp_path, ["Calcification|Necrosis", "Necrosis", "calcification", "Fat"])
    with pytest.raises(ShardError) as err:
        read_multilabel_csv(path, MultiLabelConfig())
    message = str(err.value)
    assert "'Calcification' (row 1)" in message and "'calcification' (row 3)" in message, message
    assert "label_merge" in message  # how to say they are one label

    spaced = write_pairs_csv(tmp_path / "spaced", ["Neuropil|Necrosis", "Necrosis", "neuro pil"])
    with pytest.raises(ShardError, match=r"'Neuropil' \(row 1\).*'neuro pil' \(row 3\)"):
        read_multilabel_csv(spaced, MultiLabelConfig())


def test_a_label_merge_that_unites_the_spellings_is_accepted(tmp_path):
    path = write_pairs_csv(tmp_path, ["Calcification|Necrosis", "Necrosis", "calcification", "Fat"])
    (tmp_path / "merge.yaml").write_text("Calcification:\n  - calcification\n")
    got = read_multilabel_csv(path, MultiLabelConfig(label_merge=tmp_path / "merge.yaml"))
    assert got.classes == ["Calcification", "Fat", "Necrosis"]


def test_a_label_holding_another_separator_is_warned_about(tmp_path, caplog):
    path = write_pairs_csv(tmp_path, ["fat;necrosis", "necrosis", "fat"])
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.data.multilabel"):
        got = read_multilabel_csv(path, MultiLabelConfig())
    assert "fat;necrosis" in got.classes  # still read as written: a warning, not a refusal
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "'fat;necrosis'" in warning and "';'" in warning and "'|'" in warning, warning
    assert "data.multilabel.separator" in warning
