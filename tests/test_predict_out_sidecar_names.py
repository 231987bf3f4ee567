"""`predict --out p.csv` writes `p.slides.csv` and `p.skipped.csv` beside the predictions, and removes them when a
rerun has no slides / no unreadable input. A job given `--out p.slides.csv` (or `p.skipped.csv`) wrote its
predictions under the name of another job's side file: the `p.csv` job then overwrote them with its aggregates, or
deleted them, without a word. Such a name is now refused before anything is read or written, naming the job whose
side file it is."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import UserError
from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run

from support.predict_stand_in import StandIn, images_with_a_broken_one


@pytest.mark.parametrize("name,owner", [("p.slides.csv", "p.csv"), ("p.skipped.jsonl", "p.jsonl")])
def test_an_out_named_as_another_outputs_side_file_is_refused(tmp_path, monkeypatch, name, owner):
    images = images_with_a_broken_one(tmp_path / "in", ["a"])
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    with pytest.raises(UserError) as err:
        predict_to_file("models:/stand-in@champion", [images], tmp_path / name)
    assert f"--out {tmp_path / name}" in str(err.value) and owner in str(err.value), err.value
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]

