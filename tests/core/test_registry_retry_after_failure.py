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


@pytest.mark.parametrize("lost_call", ["get_model_version_by_alias", "get_run"])
def test_a_holder_the_server_failed_to_read_is_no_missing_holder(tmp_path, monkeypatch, lost_call):
    """The alias holder read from a server that failed the call (a 503, a dropped connection) was taken for "no
    holder" (or a holder whose run was deleted): the alias moved to the worse version, "first version with alias".
    The registration now fails, naming the error, and its retry decides on the real holder."""
    import mlflow
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    uri, client, best_run, package = _run_and_package(tmp_path)
    registry.register_model(best_run, "nb-lost", package, alias="champion", tracking_uri=uri, metric="val/acc")
    exp = client.get_run(best_run).info.experiment_id
    worse_run = client.create_run(exp).info.run_id
    client.log_metric(worse_run, "val/acc", 0.1)
    client.set_terminated(worse_run)
    real = getattr(mlflow.MlflowClient, lost_call)
    lost = []

    def unavailable(self, *args, **kwargs):
        reading_holder = lost_call == "get_model_version_by_alias" or args[0] == best_run
        if reading_holder and not lost:
            lost.append(args)
            raise mlflow.exceptions.MlflowException("service unavailable", error_code=TEMPORARILY_UNAVAILABLE)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, lost_call, unavailable)
    with pytest.raises(mlflow.exceptions.MlflowException, match="service unavailable"):
        registry.register_model(worse_run, "nb-lost", package, alias="champion", tracking_uri=uri, metric="val/acc")
    assert str(client.get_model_version_by_alias("nb-lost", "champion").version) == "1"
    again = registry.register_model(worse_run, "nb-lost", package, alias="champion", tracking_uri=uri,
                                    metric="val/acc")
    assert (again.version, again.alias_moved) == ("2", False), again.reason
    assert str(client.get_model_version_by_alias("nb-lost", "champion").version) == "1"


def test_a_failed_search_for_the_earlier_version_is_no_empty_registry(tmp_path, monkeypatch):
    """The search for the version a run's weights already made, failed by the server, was taken for "nothing
    before": the rerun registered a second copy. It now fails, and its retry gives the version back."""
    import mlflow
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    uri, client, run_id, package = _run_and_package(tmp_path)
    first = registry.register_model(run_id, "nb-search", package, alias=None, tracking_uri=uri, metric="val/acc")
    real, lost = mlflow.MlflowClient.search_model_versions, []

    def unavailable(self, *args, **kwargs):
        if not lost:
            lost.append(args)
            raise mlflow.exceptions.MlflowException("service unavailable", error_code=TEMPORARILY_UNAVAILABLE)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "search_model_versions", unavailable)
    with pytest.raises(mlflow.exceptions.MlflowException, match="service unavailable"):
        registry.register_model(run_id, "nb-search", package, alias=None, tracking_uri=uri, metric="val/acc")
    again = registry.register_model(run_id, "nb-search", package, alias=None, tracking_uri=uri, metric="val/acc")
    assert again.version == first.version == "1"
    assert [str(mv.version) for mv in real(client, "name='nb-search'")] == ["1"]
