"""The skipped register stage's recheck against the MLflow store, without a real server.

A rerun with an up-to-date registration asks the store whether it still holds the version. That lookup used to be
made against an http server without checking that it answers (and with MLflow's default retries: minutes of stall
with the server down), and any error from looking up the training run, a connection failure included, was taken
for "not in the MLflow store (another database in its place?)". A failure other than a refusal on rank 0 left the
other ranks waiting for its answer."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.pipeline import stages
from mmlnb_dist.pipeline.finish import registration_lost

URI = "http://127.0.0.1:9"
STATE = {"registered": True, "name": "clip-nb", "version": 1, "run_id": "r1", "model_uri": "models:/clip-nb/1"}


class _Client:
    """An MlflowClient whose registry no longer holds the version and whose `get_run` fails with `run_error`."""

    calls: list = []

    def __init__(self, run_error):
        self.run_error = run_error

    def __call__(self, *args, **kwargs):
        return self

    def get_model_version(self, name, version):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

        _Client.calls.append("get_model_version")
        raise MlflowException("no such version", error_code=RESOURCE_DOES_NOT_EXIST)

    def get_run(self, run_id):
        _Client.calls.append("get_run")
        raise self.run_error


@pytest.fixture
def client(monkeypatch):
    import mlflow

    from mmlnb_dist.core.tracking import server

    _Client.calls = []
    monkeypatch.setattr(server, "server_reachable", lambda *a, **k: True)

    def use(run_error):
        monkeypatch.setattr(mlflow, "MlflowClient", _Client(run_error))

    return use


def test_a_failed_run_lookup_other_than_not_found_keeps_the_record(client, caplog):
    from mlflow.exceptions import MlflowException

    client(MlflowException("connection refused"))  # INTERNAL_ERROR: not an answer about the store's contents
    with caplog.at_level(logging.WARNING):
        reason = registration_lost(URI)(dict(STATE))
    assert reason is None
    assert "r1" in caplog.text and "connection refused" in caplog.text


def test_a_store_without_the_version_or_its_run_is_refused(client):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    client(MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST))
    with pytest.raises(UserError, match="nor is its training run"):
        registration_lost(URI)(dict(STATE))


def test_an_unreachable_server_is_not_asked_and_the_record_is_kept(client, monkeypatch, caplog):
    from mmlnb_dist.core.tracking import server

    client(AssertionError("the store must not be asked"))
    monkeypatch.setattr(server, "server_reachable", lambda *a, **k: False)
    for var in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    with caplog.at_level(logging.WARNING):
        assert registration_lost(URI)(dict(STATE)) is None
    assert _Client.calls == []
    assert URI in caplog.text
    import os

    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" in os.environ  # a server that goes down mid-lookup stalls briefly


def test_a_recheck_failure_on_rank_zero_reaches_every_rank(monkeypatch):
    sent = []

    def gather(env, obj):
        sent.append(obj)
        return [obj, obj]

    monkeypatch.setattr(stages, "all_gather_object", gather)

    def broken(state):
        raise RuntimeError("database is locked")

    with pytest.raises(RuntimeError, match="database is locked"):
        stages._lost(broken, {}, DistEnv(rank=0, world_size=2))
    assert sent, "rank 0 raised before giving the other ranks its answer"

    monkeypatch.setattr(stages, "all_gather_object", lambda env, obj: [sent[0], obj])
    with pytest.raises(Exception, match="database is locked"):
        stages._lost(broken, {}, DistEnv(rank=1, world_size=2))
