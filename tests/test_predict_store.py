"""`predict --model models:/NAME@ALIAS` names the MLflow store it looked in. Without `--uri` (or a config) the
store is the embedded default `runs/mlflow.db` under the current folder: from another folder the model was "not
found" with no word of where it was looked for, and the lookup left an empty 1 MB `runs/mlflow.db` behind."""
from __future__ import annotations

import numpy as np
from PIL import Image

from mmlnb_dist.cli import main


def _image(path):
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(path)
    return path


def test_a_default_store_that_does_not_exist_is_named_and_not_created(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    img = _image(tmp_path / "a.png")
    code = main(["predict", str(img), "--model", "models:/cpu-demo@champion", "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2, err
    assert str(tmp_path / "runs" / "mlflow.db") in err and "--uri" in err, err
    assert not (tmp_path / "runs").exists()  # a lookup creates nothing


def test_a_model_missing_from_an_existing_store_names_the_store(tmp_path, capsys):
    import mlflow

    db = tmp_path / "store.db"
    uri = f"sqlite:///{db}"
    mlflow.MlflowClient(tracking_uri=uri).search_experiments()  # an existing store without that model
    img = _image(tmp_path / "a.png")
    code = main(["predict", str(img), "--model", "models:/cpu-demo@champion", "--out", str(tmp_path / "p.csv"),
                 "--uri", uri])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "model not found: models:/cpu-demo@champion" in err and uri in err, err
