"""A held-out split that has samples but none of a class the training split has (one slide of D, stratified and
grouped by slide: it can only go to train) was written without a word, so validation metrics silently leave that
class out. The build now warns, naming the split, the class and how many slides it has."""
from __future__ import annotations

import logging

from mmlnb_dist.data.build import SampleSpec
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.split import split_samples


def _specs(slides):
    return [SampleSpec(f"{c}_{s}_{i}", c, b"unused", slide_id=f"{c}-s{s}")
            for c, n in slides.items() for s in range(n) for i in range(4)]


def test_a_class_missing_from_a_held_out_split_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.data.split"):
        splits = split_samples(_specs({"UD": 3, "PD": 3, "D": 1}), BuildConfig(val_fraction=0.34))
    assert {s.label for s in splits["val"]} == {"UD", "PD"} and "D" in {s.label for s in splits["train"]}
    warned = [r.getMessage() for r in caplog.records if "has no" in r.getMessage()]
    assert len(warned) == 1, caplog.text
    assert "the val split has no D" in warned[0] and "1 slide" in warned[0]


def test_no_warning_when_every_class_reaches_the_held_out_split(caplog):
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.data.split"):
        splits = split_samples(_specs({"UD": 3, "PD": 3, "D": 3}), BuildConfig(val_fraction=0.34))
    assert {s.label for s in splits["val"]} == {"UD", "PD", "D"}
    assert "has no" not in caplog.text
