"""`data synth --n 12 --n-slides 40` wrote 12 slides (a slide holds patches of its class only, one patch fills at
most one slide) and said only "from 12 slides", never that 40 were asked for. It now warns once, naming both
numbers; a set whose every slide got patches says nothing."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.data.synthetic import make_synthetic_dataset


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "slides" in r.getMessage()]


# 12 patches, 40 slides: one patch fills at most one; n=7 over 3 classes (3, 2, 2 patches) and 9 slides (3 per
# class): slides 8 and 9 of the smaller classes stay empty
@pytest.mark.parametrize("n, n_slides", [(12, 40), (7, 9)])
def test_fewer_slides_than_asked_are_said_once_with_both_numbers(tmp_path, caplog, n, n_slides):
    with caplog.at_level(logging.WARNING):
        summary = make_synthetic_dataset(tmp_path, n=n, size=16, n_slides=n_slides, seed=0, workers=1)
    assert summary["n_slides"] == n
    said = _warnings(caplog)
    assert len(said) == 1 and str(n) in said[0] and str(n_slides) in said[0], said


def test_every_slide_filled_says_nothing(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        summary = make_synthetic_dataset(tmp_path, n=12, size=16, n_slides=6, seed=0, workers=1)
    assert summary["n_slides"] == 6 and not _warnings(caplog)
