"""A pipeline rerun after its MLflow store was lost. The register stage was skipped on its fingerprint alone
(settings and URI), so a rerun with `runs/mlflow.db` moved away skipped every stage, MLflow made an empty store in
its place, and the report still said `registered: models:/clip-nb/1` with a predict line that failed "model not
found". Now a skipped registration is checked against the store (one lookup): a store that is gone is refused,
naming the file and what it held, and nothing is created; a store that no longer holds the version registers the
training run again; a new tracking.uri gets the training run's journal, then the registration."""
from __future__ import annotations

import pytest

from support.cli import run_cli
from support.clip import CLIP_PROFILE, caption_shards

ARGS = ("train.epochs=1", "tracking.backends=[mlflow]", "tracking.log_environment=false",
        "tracking.register_name=clip-nb", "data.loader.num_workers=0", "data.loader.image_size=32", "run.name=lost")


def _args(tmp_path, *extra):
    shards = tmp_path / "shards"
    if not shards.exists():
        caption_shards(tmp_path, n=48, size=32, test_fraction=0.25)
    return ["pipeline", "--config", str(CLIP_PROFILE), f"data.shards={shards}", f"run.output_dir={tmp_path / 'runs'}",
            *ARGS, *extra]


def _client(uri):
    import mlflow

    return mlflow.MlflowClient(uri, registry_uri=uri)


def _pipeline(tmp_path, *extra):
    code, out, err = run_cli(_args(tmp_path, *extra))
    assert code == 0, err
    return out


@pytest.mark.slow
def test_a_rerun_with_the_store_moved_away_is_refused_and_creates_no_store(tmp_path):
    first = _pipeline(tmp_path)
    assert "registered: `models:/clip-nb/1`" in first
    db = tmp_path / "runs" / "mlflow.db"
    db.rename(tmp_path / "runs" / "mlflow.db.keep")

    code, out, err = run_cli(_args(tmp_path))
    assert code == 2, err
    assert str(db) in err and "models:/clip-nb/1" in err and "tracking.uri" in err, err
    assert "registered:" not in out
    assert not db.exists()  # no empty store made in its place

    (tmp_path / "runs" / "mlflow.db.keep").rename(db)
    again = _pipeline(tmp_path)  # put back: the registration is there, nothing runs
    assert "| register | skipped (up to date)" in again and "registered: `models:/clip-nb/1`" in again


@pytest.mark.slow
def test_a_registration_gone_from_the_store_is_made_again_from_the_training_run(tmp_path):
    _pipeline(tmp_path)
    uri = f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    client = _client(uri)
    run_id = client.get_model_version("clip-nb", "1").run_id
    client.delete_registered_model("clip-nb")

    again = _pipeline(tmp_path)
    assert "| train | skipped (up to date)" in again and "| register | ran" in again, again
    version = client.get_model_version("clip-nb", "1")
    assert version.run_id == run_id  # the same training run, registered again
    assert "registered: `models:/clip-nb/1`" in again


@pytest.mark.slow
def test_registering_a_run_whose_store_is_gone_is_refused(tmp_path):
    """Trained (with its MLflow run) by a slice that stopped before register, then the store was moved: registering
    the recorded run would make an empty store and fail there."""
    _pipeline(tmp_path, "--until", "evaluate")
    db = tmp_path / "runs" / "mlflow.db"
    db.rename(tmp_path / "runs" / "elsewhere.db")

    code, _, err = run_cli(_args(tmp_path))
    assert code == 2, err
    assert str(db) in err and "training run" in err, err
    assert not db.exists()


@pytest.mark.slow
def test_a_new_store_gets_the_training_run_then_its_registration(tmp_path):
    """The way on that the refusal names when the store is lost for good: a new tracking.uri; training is not
    redone, its journal is sent to the new store and registered there."""
    _pipeline(tmp_path)
    (tmp_path / "runs" / "mlflow.db").unlink()
    new = tmp_path / "new.db"
    again = _pipeline(tmp_path, f"tracking.uri=sqlite:///{new}")
    assert "| train | skipped (up to date)" in again and "| register | ran" in again, again
    client = _client(f"sqlite:///{new}")
    version = client.get_model_version("clip-nb", "1")
    assert client.get_run(version.run_id).info.status == "FINISHED"
    assert not (tmp_path / "runs" / "mlflow.db").exists()
