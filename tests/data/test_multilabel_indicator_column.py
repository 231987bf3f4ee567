"""A one-hot (wide) CSV, one 0/1 or yes/no column per label, given with `--labels-column fat`: its cells are
indicator values, not label names. Read as label sets they made two classes named `0` and `1` (or `yes` and
`no`) and the build went on; the reader must refuse it, naming the column and the label-set form it wants."""
from __future__ import annotations

import pytest

from mmlnb_dist.data.config import MultiLabelConfig
from mmlnb_dist.data.multilabel import read_multilabel_csv
from mmlnb_dist.data.shardset import ShardError

from support.shards import write_pairs_csv


@pytest.mark.parametrize("cells", [["0", "1", "1", "0"], ["true", "False", "TRUE", "false"],
                                   ["yes", "no", "no", "yes"], ["1", "1", "1", "1"], ["Y", "N", "y", "n"]])
def test_a_labels_column_of_indicator_values_is_refused_naming_it(tmp_path, cells):
    path = write_pairs_csv(tmp_path, cells)
    with pytest.raises(ShardError, match=r"labels column 'labels' holds only indicator values .*one-hot"):
        read_multilabel_csv(path, MultiLabelConfig())


def test_numbered_labels_and_a_yes_beside_real_names_are_still_label_sets(tmp_path):
    """Labels that are numbers other than 0/1, or a yes/no among real names, are names: read as before."""
    got = read_multilabel_csv(write_pairs_csv(tmp_path, ["1|2", "3", "2"]), MultiLabelConfig())
    assert got.classes == ["1", "2", "3"]
    got = read_multilabel_csv(write_pairs_csv(tmp_path / "b", ["yes|fat", "no", "fat"]), MultiLabelConfig())
    assert got.classes == ["fat", "no", "yes"]
