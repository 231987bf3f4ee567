"""Mutation audit of the synthetic multi-label set (`data.synthetic_multilabel`): the first 12 patches each show
their own finding (every label present from n = 12 on), the noise rates' bounds are inclusive, and the captions
follow the extreme rates exactly."""
from __future__ import annotations

import csv

import pytest

from mmlnb_dist.data.synthetic_multilabel import FINDING_PHRASES, FINDINGS, make_multilabel_dataset


def _rows(out):
    with open(out / "pairs.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_patch_i_shows_finding_i_so_twelve_patches_hold_every_label(tmp_path):
    summary = make_multilabel_dataset(tmp_path / "s", n=len(FINDINGS), size=16, n_slides=5, seed=3)
    rows = _rows(tmp_path / "s")
    for i, row in enumerate(rows):
        assert FINDINGS[i] in row["labels"].split("|"), (i, row["labels"])
    assert all(count >= 1 for count in summary["label_counts"].values())
    assert [r["slide_id"] for r in rows[:6]] == ["slide-000", "slide-001", "slide-002", "slide-003", "slide-004",
                                                 "slide-000"]


def test_rates_of_exactly_0_and_1_are_accepted_and_followed(tmp_path):
    """omit_rate=1 names no true finding, wrong_rate=1 names one wrong finding in every caption, faint_rate=1
    draws every finding faint; a rate outside [0, 1] is refused."""
    summary = make_multilabel_dataset(tmp_path / "s", n=6, size=16, n_slides=2, omit_rate=1.0, wrong_rate=1.0,
                                      faint_rate=1.0, seed=0)
    rows = _rows(tmp_path / "s")
    for row in rows:
        truth = set(row["labels"].split("|"))
        named = {f for f in FINDINGS if any(p in row["text"].lower() for p in FINDING_PHRASES[f])}
        assert len(named) == 1 and not named & truth, row
        assert set(row["faint"].split("|")) == truth
    assert summary["wrong_mentions"] == 6 and summary["omitted_mentions"] == summary["faint_findings"]
    with pytest.raises(ValueError, match="omit_rate"):
        make_multilabel_dataset(tmp_path / "bad", n=2, size=16, omit_rate=1.01)
