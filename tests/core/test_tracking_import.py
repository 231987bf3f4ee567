"""`tracking import RUN_FOLDER`: a run trained without mlflow in `tracking.backends` becomes an MLflow run made from
what its folder kept (config.yaml, metrics.jsonl), so it can be registered; it used to be refused by `register
--run` for good ("no MLflow training run on record"), with no way to track it after the fact."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.cli import main

from support.fusion import make_shards, tiny_config


@pytest.fixture(scope="module")
def untracked(tmp_path_factory):
    """A fusion run of 2 epochs trained with the stdout backend only."""
    from mmlnb_dist.config import save_config

    root = tmp_path_factory.mktemp("untracked")
    shards = make_shards(root, n=36, size=32)
    cfg = tiny_config(shards, root / "runs", "offline", ["data.loader.image_size=32", "train.epochs=2"])
    config = save_config(cfg, root / "offline.yaml")
    assert main(["train", "--config", str(config)]) == 0
    return root, config


def _client(root):
    import mlflow

    uri = f"sqlite:///{(root / 'runs' / 'mlflow.db').resolve()}"
    return mlflow.MlflowClient(uri, registry_uri=uri), uri


def test_an_untracked_run_is_imported_registered_and_continued_by_a_resume(untracked, capsys, monkeypatch):
    root, config = untracked
    run_dir = root / "runs" / "offline"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert main(["register", "--run", str(run_dir), "--name", "offline"]) == 2
    assert f"mmlnb-dist tracking import {run_dir}" in capsys.readouterr().err

    monkeypatch.chdir(root / "runs")  # the store is the one beside the run folder, wherever the command runs
    assert main(["tracking", "import", str(run_dir)]) == 0
    client, uri = _client(root)
    run_id = json.loads((run_dir / "tracking" / "train.json").read_text())["run_id"]
    assert run_id in capsys.readouterr().out and not (root / "runs" / "runs").exists()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "offline-train"
    assert run.data.params["train.epochs"] == "2" and run.data.params["fusion.model.mode"] == "prmf"
    assert run.data.tags["run_dir"] == str(run_dir.resolve())
    # every metric record at its step, as the MLflow backend would have logged it
    expected = sorted((r["step"], r["val/balanced_accuracy"]) for r in records if "val/balanced_accuracy" in r)
    history = client.get_metric_history(run_id, "val/balanced_accuracy")
    assert sorted((m.step, m.value) for m in history) == [(s, pytest.approx(v)) for s, v in expected]
    assert len(expected) == 2
    assert "config.yaml" in [a.path for a in client.list_artifacts(run_id)]

    assert main(["register", "--run", str(run_dir), "--name", "offline"]) == 0
    assert client.get_model_version("offline", "1").run_id == run_id
    assert main(["tracking", "import", str(run_dir)]) == 2  # once only
    assert "already has an MLflow run" in capsys.readouterr().err

    # a resume with mlflow continues the imported run (its journal), it does not start another
    assert main(["train", "--config", str(config), "run.resume=true", "train.epochs=3",
                 "tracking.backends=[stdout,mlflow]", f"tracking.uri={uri}"]) == 0
    assert json.loads((run_dir / "tracking" / "train.json").read_text())["run_id"] == run_id
    history = client.get_metric_history(run_id, "val/balanced_accuracy")
    assert len(history) == 3 and client.get_run(run_id).data.tags["resume_count"] == "1"


def test_a_run_that_stopped_before_its_end_is_imported_as_killed(untracked, tmp_path):
    import shutil

    root, _ = untracked
    stopped = tmp_path / "runs" / "stopped"
    shutil.copytree(root / "runs" / "offline", stopped, ignore=shutil.ignore_patterns("tracking", "metrics.json"))
    assert main(["tracking", "import", str(stopped)]) == 0
    import mlflow

    record = json.loads((stopped / "tracking" / "train.json").read_text())
    assert mlflow.MlflowClient(record["tracking_uri"]).get_run(record["run_id"]).info.status == "KILLED"


def test_what_cannot_be_imported_is_refused_by_name(untracked, tmp_path, capsys):
    from mmlnb_dist.core.runlock import FolderLock

    assert main(["tracking", "import", str(tmp_path)]) == 2
    assert "is not a run folder: no config.yaml" in capsys.readouterr().err
    root, _ = untracked
    (tmp_path / "config.yaml").write_text((root / "runs" / "offline" / "config.yaml").read_text())
    assert main(["tracking", "import", str(tmp_path)]) == 2
    assert "kept no metrics (metrics.jsonl is missing" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train/loss": 0.5}\nnot json\n')
    assert main(["tracking", "import", str(tmp_path)]) == 2
    assert f"{tmp_path / 'metrics.jsonl'}:2: not a metric record" in capsys.readouterr().err
    lock = FolderLock(tmp_path, "train").acquire()  # a live run still writing its metrics
    try:
        assert main(["tracking", "import", str(tmp_path)]) == 2
        assert "is in use by" in capsys.readouterr().err
    finally:
        lock.release()
    assert not (tmp_path / "tracking").exists()  # nothing half made by the refusals


def test_a_relative_store_given_by_uri_is_recorded_absolute(untracked, tmp_path, monkeypatch, capsys):
    """`tracking import --uri sqlite:///mlflow.db` recorded the URI as written: `register --run` (or a resume)
    from any other folder then opened a new, empty store there and the imported run was "not on record"."""
    import shutil

    root, _ = untracked
    run_dir = tmp_path / "runs" / "rel"
    shutil.copytree(root / "runs" / "offline", run_dir, ignore=shutil.ignore_patterns("tracking"))
    monkeypatch.chdir(tmp_path)
    assert main(["tracking", "import", str(run_dir), "--uri", "sqlite:///here.db"]) == 0
    record = json.loads((run_dir / "tracking" / "train.json").read_text())
    assert record["tracking_uri"] == f"sqlite:///{(tmp_path / 'here.db').resolve()}", record
    monkeypatch.chdir(run_dir)  # elsewhere: the run is found in the store it was imported into
    assert main(["register", "--run", str(run_dir), "--name", "rel"]) == 0, capsys.readouterr().err
    assert not (run_dir / "here.db").exists()
