"""`data synth` (both tasks) holds its output folder for the whole job, as `shards build` does: a second generator
into the same folder (two shells, or `data synth` beside a pipeline's synth stage) stops at once naming the holder,
instead of writing its patches among the first job's and its labels.csv over theirs."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.runlock import FolderInUseError, FolderLock
from mmlnb_dist.data.synthetic import make_synthetic_dataset
from mmlnb_dist.data.synthetic_multilabel import make_multilabel_dataset


@pytest.mark.parametrize("make", [
    lambda out: make_synthetic_dataset(out, n=6, size=16, n_slides=3, seed=1),
    lambda out: make_multilabel_dataset(out, n=4, size=16, n_slides=2, seed=1),
], ids=["single", "multilabel"])
def test_a_second_synth_into_a_held_folder_is_refused_and_writes_nothing(tmp_path, make):
    out = tmp_path / "src"
    with FolderLock(out, "data synth"):  # the first job, still writing
        with pytest.raises(FolderInUseError, match=r"src is in use by `data synth`"):
            make(out)
        assert sorted(p.name for p in out.rglob("*") if not p.name.startswith(".")) == []
    summary = make(out)  # once it has finished, the folder is free again
    assert summary["num_samples"] == len([p for p in out.rglob("*.png")])
