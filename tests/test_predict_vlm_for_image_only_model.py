"""`predict --vlm` with a model that reads no text (an image-only model: its metadata says `reads_text: false`):
the VLM was loaded and wrote a description for every image (hours over a slide set), and the model then ignored
them. Now it is refused before the VLM loads, naming the flag (the pipeline's printed predict line gives --vlm
only for a model that reads text)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.predict import PredictError, predict_to_file
from mmlnb_dist.predict import run as predict_run

from support.predict_stand_in import StandIn


def _never(*args, **kwargs):
    raise AssertionError("the VLM was set up for a model that reads no text")


def test_vlm_for_a_model_that_reads_no_text_is_refused_before_the_vlm_loads(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(folder / "a.png")
    model = StandIn({"reads_text": False})
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: model)
    monkeypatch.setattr(predict_run, "_vlm_describer", _never)
    monkeypatch.setattr(predict_run, "vlm_settings", _never)
    with pytest.raises(PredictError) as err:
        predict_to_file("models:/image-only@champion", [folder], tmp_path / "p.csv", vlm="tiny")
    text = str(err.value)
    assert "--vlm tiny" in text and "reads no text" in text and "models:/image-only@champion" in text, text
    assert model.calls == 0 and not (tmp_path / "p.csv").exists() and not (tmp_path / "p.csv.resume").exists()
