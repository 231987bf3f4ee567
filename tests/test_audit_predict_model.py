"""Audit of `predict`'s model loading (`predict/model.py`): a `runs:/` URI is looked up in the store (a store that
does not exist is named, not created), not taken for a local folder; a local folder MLflow cannot load is a
`ModelNotFound` naming the folder, not MLflow's own exception."""
from __future__ import annotations

import pytest

from mmlnb_dist.predict import ModelNotFound, load_model


def test_a_runs_uri_is_looked_up_in_its_store_not_taken_for_a_folder(tmp_path):
    db = tmp_path / "nowhere" / "mlflow.db"
    with pytest.raises(ModelNotFound, match=f"no MLflow store at {db}"):
        load_model("runs:/0123abcd/model", f"sqlite:///{db}")
    assert not db.exists()


def test_a_local_folder_mlflow_cannot_load_is_a_model_not_found_naming_it(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")  # no python_function flavour
    with pytest.raises(ModelNotFound, match=f"model {folder} was found but could not be loaded \\("):
        load_model(str(folder))


def test_a_model_our_code_refuses_to_load_says_so_whole_not_not_found(tmp_path, monkeypatch):
    """A model that is there but that `load_context` refuses (an export naming an encoder this installation lacks)
    was reported as "model not found", its reason cut at 300 characters: the user looked for a wrong path."""
    import mlflow

    from mmlnb_dist.core.errors import UserError

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\n")
    reason = "export/model_config.json: image_encoder 'x' is no image encoder of this installation " + "y" * 400

    def refuse(path):
        raise UserError(reason)

    monkeypatch.setattr(mlflow.pyfunc, "load_model", refuse)
    with pytest.raises(ModelNotFound) as err:
        load_model(str(folder))
    assert "not found" not in str(err.value) and reason in str(err.value), err.value
