"""The synthetic multi-label set's summary counts what was written: with fewer patches than slides asked for, the
slides that hold patches (`data synth` printed "3 multi-label patches from 10 slides")."""
from __future__ import annotations

import csv

import pytest

from mmlnb_dist.data.synthetic_multilabel import make_multilabel_dataset


@pytest.mark.parametrize("n, n_slides", [(3, 10), (5, 2)])
def test_the_summary_counts_the_slides_that_hold_patches(tmp_path, n, n_slides):
    summary = make_multilabel_dataset(tmp_path / "s", n=n, size=16, n_slides=n_slides, seed=0)
    with open(tmp_path / "s" / "pairs.csv", newline="", encoding="utf-8") as f:
        slides = {row["slide_id"] for row in csv.DictReader(f)}
    assert summary["n_slides"] == len(slides) == min(n, n_slides)
    assert summary["num_samples"] == n
