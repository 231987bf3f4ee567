"""A sample whose class index is not one of the shard set's classes is refused by the shard writer, naming the
shard and the sample, and no shard is left: index -1 was counted under the last class (Python's negative
indexing) and the shard written, so its manifest counted a sample of a class it did not hold; an index past the
last class failed with a bare IndexError."""
from __future__ import annotations

import pytest

from mmlnb_dist.data.shardset import ShardError
from mmlnb_dist.data.writer import write_tar_shard

CLASSES = ["UD", "PD", "D"]


@pytest.mark.parametrize("cls", [-1, 3, "x"])
def test_a_class_index_outside_the_classes_is_refused(tmp_path, cls):
    samples = [{"__key__": "a", "png": b"img", "cls": 0}, {"__key__": "b", "png": b"img", "cls": cls}]
    with pytest.raises(ShardError, match=rf"s\.tar: sample 'b' has class index '{cls}'; the classes are 0-2"):
        write_tar_shard(tmp_path / "s.tar", samples, CLASSES)
    assert list(tmp_path.iterdir()) == []


def test_every_class_index_in_range_is_counted_under_its_class(tmp_path):
    samples = [{"__key__": k, "png": b"img", "cls": c} for k, c in [("a", 0), ("b", 2), ("c", 2), ("d", "1")]]
    entry = write_tar_shard(tmp_path / "s.tar", samples, CLASSES)
    assert entry["num_samples"] == 4 and entry["class_counts"] == {"UD": 1, "PD": 1, "D": 2}
