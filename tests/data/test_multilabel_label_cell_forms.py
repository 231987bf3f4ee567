"""Label cells as data tools write them: a pandas list column saved with `to_csv` (Python's repr,
`['fat', 'necrosis']`), a JSON list holding null or NaN, and a missing cell written as `nan` / `None` / `NaN`
(`df.astype(str)`, `na_rep`). Each must read as the labels it holds (or as no label: the row dropped as such),
never as a class named `['fat', 'necrosis']`, `None` or `nan`."""
from __future__ import annotations

import pandas as pd
import pytest

from mmlnb_dist.data.config import MultiLabelConfig
from mmlnb_dist.data.multilabel import parse_label_cell, read_multilabel_csv

from support.shards import write_pairs_csv


@pytest.mark.parametrize("cell, names", [
    ("['fat', 'necrosis']", ["fat", "necrosis"]),       # a pandas list column through to_csv
    ("('fat', 'necrosis')", ["fat", "necrosis"]),       # a tuple column
    ('["fat", null]', ["fat"]),                         # JSON null: no label
    ('["fat", NaN]', ["fat"]),                          # JSON NaN (Python's json reads it): no label
    ("nan", []), ("NaN", []), ("None", []), ("null", []), (" N/A ", []),
    ("nanoparticles|fat", ["nanoparticles", "fat"]),    # only a whole missing cell is empty
])
def test_list_literals_and_missing_markers_read_as_their_labels(cell, names):
    assert parse_label_cell(cell, "|") == names


def test_a_pandas_written_csv_reads_its_list_column_and_drops_its_missing_rows(tmp_path):
    """A DataFrame with a list column (one row's labels missing) saved by pandas with `df.astype(str)`: the
    vocabulary is the label names, the missing row is dropped as having no labels."""
    frame = pd.DataFrame({"labels": [["fat", "necrosis"], ["mitoses"], float("nan"), ["fat"]]})
    path = write_pairs_csv(tmp_path, list(frame["labels"].astype(str)))
    got = read_multilabel_csv(path, MultiLabelConfig())
    assert got.classes == ["fat", "mitoses", "necrosis"]
    assert [(d["row"], d["reason"]) for d in got.dropped] == [(3, "no labels")]
    assert [s.meta["labels"] for s in got.samples] == [["fat", "necrosis"], ["mitoses"], ["fat"]]
    assert got.label_counts == {"fat": 2, "mitoses": 1, "necrosis": 1}


def test_a_missing_group_written_as_nan_is_no_group(tmp_path):
    """A slide id column with missing cells saved by pandas with `astype(str)` holds `nan`: those rows have no
    group (each its own split unit), not one slide named `nan` that the split keeps whole."""
    from PIL import Image

    (tmp_path / "img").mkdir()
    lines = ["image,text,labels,slide_id"]
    for i, slide in enumerate(["S1", "nan", "NaN", "None", "S1"]):
        Image.new("RGB", (8, 8), (9 * i, 0, 0)).save(tmp_path / "img" / f"p{i}.png")
        lines.append(f"img/p{i}.png,caption {i},fat,{slide}")
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    got = read_multilabel_csv(tmp_path / "pairs.csv", MultiLabelConfig())
    assert [s.slide_id for s in got.samples] == ["S1", None, None, None, "S1"]


def test_a_missing_caption_written_as_nan_drops_the_row_as_empty_text(tmp_path):
    """A caption cell of `nan` (pandas' missing text through `astype(str)`) is no caption: the row is dropped as
    "empty text", not trained and scored on the word `nan`."""
    path = write_pairs_csv(tmp_path, ["fat", "fat|necrosis", "necrosis"], texts={1: "nan", 2: "None"})
    got = read_multilabel_csv(path, MultiLabelConfig())
    assert [(d["row"], d["reason"]) for d in got.dropped] == [(2, "empty text"), (3, "empty text")]
    assert [s.description for s in got.samples] == ["caption 0"]
