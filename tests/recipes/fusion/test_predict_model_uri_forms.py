"""`predict --model` forms other than `models:/NAME@ALIAS`, resolved in the store `--uri` names: `runs:/RUN_ID/model`
(the run's logged model) predicts as the registered version does; `models:/NAME` without a version or alias, and a
bare run id, are refused naming the forms that work. Before, `runs:/` and a bare `models:/NAME` were looked up in the
default store of the current folder: the model was "not found" (`Logged model with ID 'NAME' not found`, `Failed to
download artifacts from path 'model'`), and an empty `mlflow.db` was left in the current folder."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict.errors import ModelNotFound
from support.fusion import registered_model

NAME = "forms"


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    info = registered_model(tmp_path_factory.mktemp("forms"), NAME)
    run_id = json.loads((info["root"] / "runs" / NAME / "tracking" / "train.json").read_text())["run_id"]
    return {**info, "run_id": run_id}


def _probs(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    return frame[["key", "label", *[c for c in frame.columns if c.startswith("prob_")]]]


def test_a_runs_uri_predicts_as_the_registered_version(reg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    val = [reg["shards"] / "val-000000.tar"]
    predict_to_file(f"models:/{NAME}@champion", val, tmp_path / "alias.csv", tracking_uri=reg["uri"])
    predict_to_file(f"runs:/{reg['run_id']}/model", val, tmp_path / "run.csv", tracking_uri=reg["uri"])
    pd.testing.assert_frame_equal(_probs(tmp_path / "run.csv"), _probs(tmp_path / "alias.csv"))
    assert not (tmp_path / "mlflow.db").exists()  # nothing looked up in the current folder's default store


def test_a_name_without_version_or_alias_is_refused_naming_the_forms(reg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFound) as err:
        predict_to_file(f"models:/{NAME}", [reg["shards"]], tmp_path / "p.csv", tracking_uri=reg["uri"])
    assert f"models:/{NAME}@champion" in str(err.value) and f"models:/{NAME}/1" in str(err.value), err.value
    assert not (tmp_path / "mlflow.db").exists()


def test_a_bare_run_id_is_refused_naming_the_runs_form(reg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFound) as err:
        predict_to_file(reg["run_id"], [reg["shards"]], tmp_path / "p.csv", tracking_uri=reg["uri"])
    assert f"runs:/{reg['run_id']}/model" in str(err.value), err.value


def test_a_file_url_of_a_model_folder_predicts_as_the_folder(reg, tmp_path):
    """`file:///path/to/model` (MLflow's own form of a local model) was "no such folder" for a folder that exists."""
    import shutil

    from mmlnb_dist.predict.model import _download_model

    folder = tmp_path / "my model"
    shutil.copytree(_download_model(f"models:/{NAME}@champion", reg["uri"]), folder)
    val = [reg["shards"] / "val-000000.tar"]
    predict_to_file(str(folder), val, tmp_path / "folder.csv")
    predict_to_file(folder.as_uri(), val, tmp_path / "url.csv")
    pd.testing.assert_frame_equal(_probs(tmp_path / "url.csv"), _probs(tmp_path / "folder.csv"))
    with pytest.raises(ModelNotFound, match="no such folder"):
        predict_to_file((tmp_path / "gone").as_uri(), val, tmp_path / "gone.csv")
