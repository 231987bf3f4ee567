"""`predict`'s console lines all read `[predict]`: those of `predict/inputs.py` (files left out of a folder, inputs
named twice) read `[inputs]`, a component a user of `predict` never named, beside the `[predict]` of the rest."""
from __future__ import annotations

import logging

import pytest
from support.predict_stand_in import StandIn, images_with_a_broken_one

from mmlnb_dist.core.logging import PACKAGE, setup_logging
from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run


@pytest.fixture
def console(capsys):
    """The package's console handler for the test; the logger is left as the test found it."""
    logger = logging.getLogger(PACKAGE)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    setup_logging(rank=0, level=logging.INFO)
    capsys.readouterr()
    yield lambda: [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    for h in [h for h in logger.handlers if h not in handlers]:
        logger.removeHandler(h)
    logger.handlers, logger.propagate = handlers, propagate
    logger.setLevel(level)


def test_every_predict_line_reads_predict(tmp_path, monkeypatch, console):
    folder = images_with_a_broken_one(tmp_path / "in", ["a", "c"])
    (folder / "notes.txt").write_text("not a patch")
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    predict_to_file("models:/stand-in@champion", [folder, folder / "a.png"], tmp_path / "p.csv")
    lines = console()
    left_out = [line for line in lines if "not predicted, not an image" in line]
    twice = [line for line in lines if "named more than once" in line]
    assert len(left_out) == 1 and left_out[0].startswith("WARNING [predict] "), lines
    assert len(twice) == 1 and twice[0].startswith("[predict] "), lines
    assert not [line for line in lines if "[inputs]" in line], lines
