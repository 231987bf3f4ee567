"""A rerun of a finished pipeline skips its register stage and reports the registration its record holds. When
another run took the alias since (a second pipeline registering under the same tracking.register_name), the record
still said the alias serves this run's version: the report printed "serving URI models:/m@champion (version 1)"
and a predict line scoring `models:/m@champion`, which now serves version 2, another model than the one whose
numbers the report shows. The skipped registration is read with the alias's holder as the store says now."""
from __future__ import annotations

import shlex

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.pipeline.finish import refresh_alias
from mmlnb_dist.pipeline.report import final_report, predict_line, served_model


@pytest.fixture
def store(tmp_path):
    """A sqlite MLflow store where versions 1 and 2 of model m exist and the champion alias is on version 2."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("e", artifact_location=str(tmp_path / "art"))
    client.create_registered_model("m")
    for _ in range(2):
        run = client.create_run(experiment)
        client.create_model_version("m", str(tmp_path / "art" / run.info.run_id), run_id=run.info.run_id)
    client.set_registered_model_alias("m", "champion", "2")
    return uri


def test_a_skipped_registration_reports_where_the_alias_is_now(tmp_path, store):
    recorded = {"registered": True, "name": "m", "version": "1", "alias": "champion", "alias_moved": True,
                "alias_version": "1", "reason": "first version", "run_id": "r1"}
    now = refresh_alias(recorded, store)
    assert now["alias_version"] == "2" and recorded["alias_version"] == "1"
    assert served_model(now) == "models:/m/1"  # this run's model, not the alias's new holder
    cfg = load_config("clip-demo", [f"run.output_dir={tmp_path}"])
    line = predict_line(cfg, served_model(now), "/s", store, "/o.csv", False, None)
    assert shlex.split(line)[shlex.split(line).index("--model") + 1] == "models:/m/1"
    report = final_report(cfg, [], None, now, store, line, None)
    assert "stays on version 2" in report and "(version 1)" not in report, report


def test_a_store_that_cannot_be_asked_keeps_the_record(tmp_path):
    recorded = {"registered": True, "name": "m", "version": "1", "alias": "champion", "alias_version": "1"}
    assert refresh_alias(recorded, "http://127.0.0.1:9") == recorded  # no server there: the record as it was
    assert refresh_alias({"registered": False, "reason": "x"}, "http://127.0.0.1:9") == {"registered": False,
                                                                                          "reason": "x"}


def test_an_alias_deleted_since_is_not_served(tmp_path, store):
    """The alias removed from the model since this run registered (by hand, in the MLflow UI): the store says no
    version holds it, but the report fell back to the record's "alias moved" and served `models:/m@champion`,
    which no longer resolves."""
    import mlflow

    mlflow.MlflowClient(tracking_uri=store, registry_uri=store).delete_registered_model_alias("m", "champion")
    recorded = {"registered": True, "name": "m", "version": "2", "alias": "champion", "alias_moved": True,
                "alias_version": "2", "reason": "beat version 1", "run_id": "r2"}
    now = refresh_alias(recorded, store)
    assert now["alias_version"] is None
    assert served_model(now) == "models:/m/2"
    cfg = load_config("clip-demo", [f"run.output_dir={tmp_path}"])
    report = final_report(cfg, [], None, now, store, None, None)
    assert "`models:/m@champion` (version 2)" not in report, report
    assert "models:/m/2" in report, report
