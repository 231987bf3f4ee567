"""A served model that answers with fewer (or more) rows than it was sent: its rows were zipped with the inputs,
the inputs past its last row dropped without a word (a predictions file short of images, or rows given to the wrong
image). Now refused, naming the model and both counts, and no predictions file is written."""
from __future__ import annotations

import pytest
from support.predict_stand_in import StandIn, images_with_a_broken_one

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run
from mmlnb_dist.predict.errors import PredictError

MODEL = "models:/stand-in@champion"


class RowsOff(StandIn):
    """A stand-in whose answer has `off` rows more (or fewer) than its input."""

    def __init__(self, off):
        super().__init__()
        self.off = off

    def predict(self, frame, params=None):
        out = super().predict(frame, params)
        return out.iloc[:len(out) + self.off] if self.off < 0 else out.loc[list(out.index) + [0] * self.off]


@pytest.mark.parametrize("off, got", [(-1, 2), (2, 5)])
def test_a_model_answering_another_number_of_rows_is_refused(tmp_path, monkeypatch, off, got):
    folder = images_with_a_broken_one(tmp_path / "in", ["a", "c", "d"])
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: RowsOff(off))
    with pytest.raises(PredictError) as err:
        predict_to_file(MODEL, [folder], tmp_path / "p.csv")
    text = str(err.value)
    assert MODEL in text and f"{got} rows for 3 inputs" in text, text
    assert not (tmp_path / "p.csv").exists()


def test_a_model_answering_a_row_per_input_is_written(tmp_path, monkeypatch):
    folder = images_with_a_broken_one(tmp_path / "in", ["a", "c", "d"])
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: RowsOff(0))
    assert predict_to_file(MODEL, [folder], tmp_path / "p.csv")["predicted"] == 3
