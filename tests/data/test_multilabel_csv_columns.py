"""The multi-label CSV's header and vocabulary as a user writes them: a column the reader uses, written twice (two
exports pasted side by side, an old and a new `labels`), is refused naming it, not read from whichever copy comes
last; a column the reader does not use may repeat. A given vocabulary naming a label twice is refused."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.data.config import MultiLabelConfig
from mmlnb_dist.data.multilabel import read_multilabel_csv
from mmlnb_dist.data.shardset import ShardError


def _csv(tmp_path, header, rows):
    (tmp_path / "img").mkdir(exist_ok=True)
    for i in range(len(rows)):
        Image.fromarray(np.full((8, 8, 3), 9 * i, np.uint8)).save(tmp_path / "img" / f"p{i}.png")
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("twice", ["labels", "text", "image", "slide_id"])
def test_a_used_column_written_twice_is_refused_naming_it(tmp_path, twice):
    header = ["image", "text", "labels", "slide_id"]
    rows = [[f"img/p{i}.png", f"caption {i}", "fat|necrosis", f"s{i}"] for i in range(3)]
    header.append(twice)
    rows = [row + [row[header.index(twice)]] for row in rows]
    path = _csv(tmp_path, header, rows)
    with pytest.raises(ShardError, match=rf"{path} has the column '{twice}' twice \(columns {header.index(twice) + 1} "
                                         rf"and {len(header)}\)"):
        read_multilabel_csv(path, MultiLabelConfig())


def test_the_second_copy_of_a_labels_column_is_not_read_silently(tmp_path):
    """The bug this guards: csv.DictReader keeps the last of two same-named cells, so the labels came from the
    second column (here an outdated one) without a word."""
    path = _csv(tmp_path, ["image", "text", "labels", "labels"],
                [[f"img/p{i}.png", f"caption {i}", "fat", "necrosis"] for i in range(2)])
    with pytest.raises(ShardError, match="'labels' twice"):
        read_multilabel_csv(path, MultiLabelConfig())


def test_a_repeated_column_the_reader_does_not_use_is_fine(tmp_path):
    path = _csv(tmp_path, ["image", "text", "labels", "note", "note"],
                [[f"img/p{i}.png", f"caption {i}", "fat", "x", "y"] for i in range(2)])
    got = read_multilabel_csv(path, MultiLabelConfig())
    assert got.classes == ["fat"] and len(got.samples) == 2


def test_a_given_vocabulary_naming_a_label_twice_is_refused(tmp_path):
    """`--classes A,B,A`: two outputs named A, the multi-hot vector setting only the second (the first a label
    without positives in every split); refused naming the label instead."""
    path = _csv(tmp_path, ["image", "text", "labels"], [[f"img/p{i}.png", f"caption {i}", "A|B"] for i in range(2)])
    with pytest.raises(ShardError, match=r"the vocabulary names 'A' twice \(A, B, A\)"):
        read_multilabel_csv(path, MultiLabelConfig(), classes=["A", "B", "A"])
    assert read_multilabel_csv(path, MultiLabelConfig(), classes=["A", "B"]).classes == ["A", "B"]
