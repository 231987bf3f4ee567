"""A slice that stops before train (`--until shards`) logs nothing to MLflow, yet its report said "MLflow store:
sqlite:///.../mlflow.db (browse: mlflow ui --backend-store-uri ...)" for a database that did not exist: the browse
command made an empty store and showed nothing. The report now says that store is not made yet."""
from __future__ import annotations

from mmlnb_dist.config import load_config
from mmlnb_dist.pipeline.report import tracking_rows


def test_a_store_no_stage_has_made_is_not_offered_for_browsing(tmp_path):
    cfg = load_config("clip-demo", [f"run.output_dir={tmp_path}"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (row,) = tracking_rows(cfg, [], uri)
    assert uri in row and "mlflow ui" not in row and "not made yet" in row, row
    assert not (tmp_path / "mlflow.db").exists()


def test_a_store_that_exists_is_offered_for_browsing(tmp_path):
    cfg = load_config("clip-demo", [f"run.output_dir={tmp_path}"])
    (tmp_path / "mlflow.db").write_bytes(b"")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (row,) = tracking_rows(cfg, [], uri)
    assert row == f"- MLflow store: `{uri}` (browse: `mlflow ui --backend-store-uri {uri}`)"


def test_a_server_uri_is_offered_for_browsing(tmp_path):
    cfg = load_config("clip-demo", [f"run.output_dir={tmp_path}"])
    (row,) = tracking_rows(cfg, [], "http://127.0.0.1:5000")
    assert "browse" in row, row
