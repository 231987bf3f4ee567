"""A multi-label CSV row repeated whole (the same image and label set, every other cell equal: a concatenated
export, a copy-paste) is one sample: the copy is dropped and reported naming the row it repeats, not built as a
second sample that counts twice in the label counts, in `min_frequency` and in the validation metrics. Rows of one
image with other captions, labels or slides (Quilt-style) stay separate samples."""
from __future__ import annotations

from mmlnb_dist.data.config import MultiLabelConfig
from mmlnb_dist.data.multilabel import read_multilabel_csv

from support.shards import write_pairs_csv


def test_a_row_repeated_whole_is_dropped_naming_the_first(tmp_path):
    path = write_pairs_csv(tmp_path, ["fat|necrosis", "fat", "necrosis|fat", "fat", "fat"],
                           texts={2: "caption 0", 3: "caption 1", 4: "another caption"},
                           images={2: "img/p0.png", 3: "./img/p1.png", 4: "img/p1.png"})
    got = read_multilabel_csv(path, MultiLabelConfig())
    assert [(d["row"], d["reason"]) for d in got.dropped] == [
        (3, "repeats row 1 (the same image, text and labels)"), (4, "repeats row 2 (the same image, text and labels)")]
    assert [s.meta["row"] for s in got.samples] == [1, 2, 5]  # row 5: another caption of row 2's image
    assert got.label_counts == {"fat": 3, "necrosis": 1}


def test_a_repeat_does_not_lift_a_label_over_min_frequency(tmp_path):
    path = write_pairs_csv(tmp_path, ["fat|rare", "fat|rare", "fat"], texts={1: "caption 0"},
                           images={1: "img/p0.png"})
    got = read_multilabel_csv(path, MultiLabelConfig(min_frequency=2))
    assert got.classes == ["fat"]
    assert [(d["row"], d["reason"]) for d in got.dropped] == [(2, "repeats row 1 (the same image, text and labels)")]
