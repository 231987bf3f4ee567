"""`predict` arguments refused before a model is loaded or an image predicted, naming them:
- `predict --out` that cannot be a file (a folder, even one named `x.csv`, or a path under a file) is refused
  before a model is loaded or an image predicted, naming it: it was a traceback (`IsADirectoryError`) once every
  input had been predicted, or (`NotADirectoryError`) from the journal's folder.
- `predict --adapter` that is no peft adapter folder (mistyped, or without adapter_config.json) is refused naming
  it before the model loads (a registry download) or any image is described: it was peft's `ValueError` traceback. `--adapter` without
  `--vlm`, ignored without a word (the images went undescribed), is refused before the model loads."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.predict import PredictError, predict_to_file
from mmlnb_dist.predict import run as predict_run
from support.cli import run_cli


@pytest.fixture
def image(tmp_path, monkeypatch):
    def no_model(*_, **__):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(predict_run, "load_model", no_model)
    path = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(path)
    return path


# -- --out ------------------------------------------------------------------------------------------------


def test_an_out_that_is_a_folder_is_refused_before_any_work(tmp_path, image):
    (tmp_path / "preds.csv").mkdir()
    with pytest.raises(PredictError, match=r"--out .*preds\.csv is a folder"):
        predict_to_file("models:/m@champion", [image], tmp_path / "preds.csv")
    assert not (tmp_path / "preds.csv.resume").exists()


def test_an_out_under_a_file_is_refused_before_any_work(tmp_path, image):
    (tmp_path / "taken").write_text("a file")
    code, _, err = run_cli(["predict", "--model", "models:/m@champion", str(image), "--out",
                            str(tmp_path / "taken" / "preds.csv")])
    assert code == 2 and "Traceback" not in err
    assert f"{tmp_path / 'taken'} is a file" in err


# -- --adapter --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_an_adapter_folder_that_is_no_adapter_is_refused_naming_it(tmp_path, image, make, monkeypatch):
    from support.predict_stand_in import StandIn

    loads = []
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: loads.append(a) or StandIn())
    adapter = tmp_path / "adapter"
    if make == "empty":
        adapter.mkdir()
    with pytest.raises(PredictError, match=r"--adapter .*adapter: .*adapter_config\.json|--adapter .*no such folder"):
        predict_to_file("models:/m@champion", [image], tmp_path / "p.csv", vlm="tiny", adapter=adapter)
    assert not (tmp_path / "p.csv").exists()
    assert loads == [] and not (tmp_path / "p.csv.resume").exists()  # (refused after a registry download)


def test_an_adapter_without_a_vlm_is_refused(tmp_path, image):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(PredictError, match=r"--adapter .* --vlm"):
        predict_to_file("models:/m@champion", [image], tmp_path / "p.csv", adapter=adapter)
