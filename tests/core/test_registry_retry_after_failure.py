"""A registration that failed after the registry made its version (the server lost between creating the version
and tagging it) is retried with `register` again: the retry gives back that version, never a second copy of the
same run's same weights."""
from __future__ import annotations

import textwrap

import pytest

from mmlnb_dist.core.tracking import registry

MODEL_CODE = textwrap.dedent("""
    import mlflow


    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input


    mlflow.models.set_model(Echo())
""")


@pytest.fixture(autouse=True)
def _process_uris_left_unset():
    import mlflow

    yield
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def _run_and_package(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    exp = client.create_experiment("retry", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(exp).info.run_id
    client.log_metric(run_id, "val/acc", 0.7)
    client.set_terminated(run_id)
    code = tmp_path / "model_code.py"
    code.write_text(MODEL_CODE)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "w.json").write_text("[1, 2, 3]")

    def package(run):
        return registry.ModelPackage(python_model=str(code), artifacts={"weights": str(weights)}, signature=None,
                                     input_example=None)

    return uri, client, run_id, package


def test_a_retry_after_a_registration_lost_halfway_gives_back_its_version(tmp_path, monkeypatch):
    import mlflow

    uri, client, run_id, package = _run_and_package(tmp_path)
    lost = []  # the server goes away right after it made the version: the next registry call fails, once

    def watch(method):
        real = getattr(mlflow.MlflowClient, method)

        def call(self, *args, **kwargs):
            if method != "create_model_version" and lost == [True]:
                lost.append(method)
                raise ConnectionError("tracking server lost")
            result = real(self, *args, **kwargs)
            if method == "create_model_version":
                lost.append(True)
            return result
        monkeypatch.setattr(mlflow.MlflowClient, method, call)

    for method in ("create_model_version", "update_model_version", "set_model_version_tag",
                   "set_registered_model_alias"):
        watch(method)
    with pytest.raises(ConnectionError):
        registry.register_model(run_id, "nb-retry", package, alias="champion", tracking_uri=uri,
                                metric="val/acc", mode="max")
    again = registry.register_model(run_id, "nb-retry", package, alias="champion", tracking_uri=uri,
                                    metric="val/acc", mode="max")
    versions = sorted(str(mv.version) for mv in client.search_model_versions("name='nb-retry'"))
    assert versions == ["1"], again.reason
    assert again.version == "1" and again.reason.startswith("already, by an earlier registration")
    assert str(client.get_model_version_by_alias("nb-retry", "champion").version) == "1"
