"""`--model runs:/RUN_ID` (the run, without the path its model was logged under): MLflow fetched every artifact of
the run (a remote store's whole run, downloaded) and then failed with 'Could not find an "MLmodel" configuration
file'. Now it is refused before anything is fetched, naming the form that works, `runs:/RUN_ID/model`, as a bare
run id is."""
from __future__ import annotations

import pytest

from mmlnb_dist.predict.errors import ModelNotFound
from mmlnb_dist.predict.model import load_model

RUN_ID = "9d7492da5bf546c68fba62e6cdb297a2"


@pytest.mark.parametrize("uri", [f"runs:/{RUN_ID}", f"runs:/{RUN_ID}/", f"runs:/{RUN_ID}//"])
def test_a_runs_uri_without_a_model_path_names_the_runs_model_form(uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fetched = []
    import mlflow

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", lambda *a, **k: fetched.append(a or k))
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "mlflow.db").touch()
    with pytest.raises(ModelNotFound) as err:
        load_model(uri, store)
    assert f"runs:/{RUN_ID}/model" in str(err.value) and "no model path" in str(err.value), err.value
    assert not fetched


def test_a_runs_uri_without_a_run_is_refused_naming_the_form(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFound) as err:
        load_model("runs:/", None)
    assert "runs:/RUN_ID/model" in str(err.value), err.value
    assert list(tmp_path.iterdir()) == []  # no default store created in the current folder
