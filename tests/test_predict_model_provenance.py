"""Which model wrote a finished predictions file. Nothing recorded it: a rerun into the same `--out` after the
registry alias moved to another version overwrote the old model's predictions without a word, and a reader of the
file could not tell which model it holds. `predict` now writes `<out>.model.json` beside the predictions (the
URI as given, the registered name and version it resolved to, the run id and model uuid, the MLmodel digest), and a
rerun with another model redoes the whole job (no row of the old model kept) with a warning naming both models."""
from __future__ import annotations

import json
import logging
from types import SimpleNamespace

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run
from mmlnb_dist.predict.provenance import model_record_file

from support.predict_stand_in import Meta, StandIn, images_with_a_broken_one

MODEL = "models:/stand-in@champion"


def _model(uuid, run_id, metadata=None):
    model = StandIn(metadata)
    model.metadata = Meta(metadata or {}, uuid)
    model.metadata.run_id = run_id
    return model


def _use(monkeypatch, model):
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: model)
    return model


def test_the_model_that_wrote_the_predictions_is_recorded_beside_them(tmp_path, monkeypatch):
    images = images_with_a_broken_one(tmp_path / "in", ["a", "c"])
    out = tmp_path / "p.csv"
    _use(monkeypatch, _model("uuid-1", "run1"))
    predict_to_file(MODEL, [images], out)
    record = json.loads(model_record_file(out).read_text())
    assert model_record_file(out) == tmp_path / "p.csv.model.json"
    assert {k: record[k] for k in ("uri", "model_uuid", "run_id")} == {
        "uri": MODEL, "model_uuid": "uuid-1", "run_id": "run1"}


def test_a_rerun_with_another_model_is_redone_and_names_both_models(tmp_path, monkeypatch, caplog):
    images = images_with_a_broken_one(tmp_path / "in", ["a", "c", "d"])
    out = tmp_path / "p.jsonl"
    _use(monkeypatch, _model("uuid-1", "run1", {"n": 1}))
    predict_to_file(MODEL, [images], out)

    new = _use(monkeypatch, _model("uuid-2", "run2", {"n": 2}))
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.predict"):
        report = predict_to_file(MODEL, [images], out)  # the alias moved: same URI, another model
    assert report["resumed"] == 0 and new.seen == ["a", "c", "d"]
    warned = [r.getMessage() for r in caplog.records if "another model" in r.getMessage()]
    assert len(warned) == 1 and all(w in warned[0] for w in ("uuid-1", "run1", "uuid-2", "run2")), caplog.text
    assert json.loads(model_record_file(out).read_text())["model_uuid"] == "uuid-2"


def test_a_rerun_with_the_same_model_says_nothing(tmp_path, monkeypatch, caplog):
    images = images_with_a_broken_one(tmp_path / "in", ["a"])
    out = tmp_path / "p.csv"
    for _ in range(2):
        _use(monkeypatch, _model("uuid-1", "run1"))
        with caplog.at_level(logging.WARNING, logger="mmlnb_dist.predict"):
            predict_to_file(MODEL, [images], out)
    assert not [r for r in caplog.records if "another model" in r.getMessage()], caplog.text


def test_a_local_model_folder_is_known_by_its_path_and_mlmodel_digest(tmp_path, monkeypatch):
    import hashlib

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors: {}\nmodel_uuid: u\n")
    images = images_with_a_broken_one(tmp_path / "in", ["a"])
    out = tmp_path / "p.csv"
    _use(monkeypatch, _model("u", None))
    predict_to_file(str(folder), [images], out)
    record = json.loads(model_record_file(out).read_text())
    assert record["path"] == str(folder.resolve())
    assert record["mlmodel_sha256"] == hashlib.sha256((folder / "MLmodel").read_bytes()).hexdigest()


class _Registry:
    """The registry calls `registered_version` makes (a real store's creation takes tens of seconds): the
    version each alias is on, moved by the test."""

    aliases = {}

    def __init__(self, tracking_uri=None, registry_uri=None):
        pass

    def _get_registry_client(self):
        return self

    def get_model_version_by_alias(self, name, alias):
        return SimpleNamespace(version=self.aliases[(name, alias)])


def test_an_alias_moved_to_another_version_is_named_by_both_versions(tmp_path, monkeypatch, caplog):
    """`models:/m@champion` resolved to version 1, then (the alias moved) to version 2: the record holds the name
    and version, and the rerun's warning names both versions."""
    import mlflow

    monkeypatch.setattr(mlflow, "MlflowClient", _Registry)
    images = images_with_a_broken_one(tmp_path / "in", ["a"])
    out = tmp_path / "p.csv"
    for version, uuid in (("1", "uuid-1"), ("2", "uuid-2")):
        monkeypatch.setattr(_Registry, "aliases", {("m", "champion"): version})
        _use(monkeypatch, _model(uuid, None))
        with caplog.at_level(logging.WARNING, logger="mmlnb_dist.predict"):
            predict_to_file("models:/m@champion", [images], out, tracking_uri="http://registry.invalid:5000")
        record = json.loads(model_record_file(out).read_text())
        assert (record["name"], record["version"]) == ("m", version)
    [warned] = [r.getMessage() for r in caplog.records if "another model" in r.getMessage()]
    assert "m version 1" in warned and "m version 2" in warned


def test_no_version_is_looked_up_in_a_store_that_is_not_there(tmp_path):
    """A SQLite store not there is not created to record a version in (nor is MLflow's default one)."""
    from mmlnb_dist.predict.model import registered_version

    db = tmp_path / "none.db"
    assert registered_version("models:/m@champion", f"sqlite:///{db}") == (None, None)
    assert registered_version("models:/m@champion", None) == (None, None)
    assert not db.exists() and list(tmp_path.iterdir()) == []


def test_a_csv_and_a_jsonl_of_one_stem_each_keep_the_record_of_their_own_model(tmp_path, monkeypatch, caplog):
    """`--out p.csv` and `--out p.jsonl` both recorded their model in `p.csv.model.json`: the second job's record
    replaced the first's, so p.csv named a model that never wrote it, and a rerun of p.csv with its own model
    warned of "another model"."""
    images = images_with_a_broken_one(tmp_path / "in", ["a"])
    csv_out, jsonl_out = tmp_path / "p.csv", tmp_path / "p.jsonl"
    assert model_record_file(csv_out) != model_record_file(jsonl_out)
    _use(monkeypatch, _model("uuid-1", "run1"))
    predict_to_file(MODEL, [images], csv_out)
    _use(monkeypatch, _model("uuid-2", "run2"))
    predict_to_file(MODEL, [images], jsonl_out)
    assert json.loads(model_record_file(csv_out).read_text())["model_uuid"] == "uuid-1"
    assert json.loads(model_record_file(jsonl_out).read_text())["model_uuid"] == "uuid-2"
    _use(monkeypatch, _model("uuid-1", "run1"))
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.predict"):
        predict_to_file(MODEL, [images], csv_out)
    assert not [r for r in caplog.records if "another model" in r.getMessage()], caplog.text
