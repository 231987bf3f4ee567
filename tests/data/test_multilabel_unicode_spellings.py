"""Label names that look identical but are written in two Unicode forms (`Ödem` composed, U+00D6, and decomposed,
O + U+0308, as macOS and some exports write it; a no-break space inside a name) are one label spelled two ways:
refused as the case and spacing variants are, naming both and their rows, never built as two classes that each
hold half of the label's samples."""
from __future__ import annotations

import pytest

from mmlnb_dist.data.config import MultiLabelConfig
from mmlnb_dist.data.multilabel import read_multilabel_csv
from mmlnb_dist.data.shardset import ShardError

from support.shards import write_pairs_csv


@pytest.mark.parametrize("other", ["O\u0308dem", "\u00f6dem"])
def test_unicode_forms_of_one_label_are_refused_naming_both(tmp_path, other):
    path = write_pairs_csv(tmp_path, ["\u00d6dem|fat", "fat", f"{other}"])
    with pytest.raises(ShardError, match=r"'\u00d6dem' \(row 1\) and '" + other + r"' \(row 3\)"):
        read_multilabel_csv(path, MultiLabelConfig())


def test_a_no_break_space_inside_a_name_is_spacing(tmp_path):
    path = write_pairs_csv(tmp_path, ["fat necrosis", "fat\u00a0necrosis"])
    with pytest.raises(ShardError, match=r"'fat necrosis' \(row 1\) and 'fat\u00a0necrosis' \(row 2\)"):
        read_multilabel_csv(path, MultiLabelConfig())


def test_distinct_accented_labels_stay_distinct(tmp_path):
    got = read_multilabel_csv(write_pairs_csv(tmp_path, ["\u00d6dem", "Odem", "\u00e9l\u00e9ment"]), MultiLabelConfig())
    assert got.classes == sorted(["\u00d6dem", "Odem", "\u00e9l\u00e9ment"])
