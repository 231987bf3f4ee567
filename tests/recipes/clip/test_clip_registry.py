"""The CLIP recipe in the Model Registry: `tracking.register_name` registers a finished run, the alias moves only
when the metric beats its holder's, the registered model is code (nothing pickled) whose probabilities equal the
export's sigmoid(logits), and `mmlnb-dist register` works for a clip run."""
from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest

from mmlnb_dist.cli import main

from support.clip import CLIP_PROFILE, VOCAB
from support.clip_registry import AUTO_NAME, export_probabilities, raw_split, registered_run

METRIC = "best/val/micro_f1"  # the profile's train.best_metric, as the end-of-training hook selects on


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    yield from registered_run(tmp_path_factory.mktemp("clipreg"))


def _fake_run(client, trained, value: float) -> str:
    """Another 'training run' of the same export folder with a chosen val/micro_f1 (no second training)."""
    src = client.get_run(trained["run_id"])
    run = client.create_run(src.info.experiment_id, tags={"run_dir": src.data.tags["run_dir"]})
    client.log_inputs(run.info.run_id, datasets=list(src.inputs.dataset_inputs))  # scored on the same val set
    client.log_metric(run.info.run_id, "val/micro_f1", value)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_training_with_register_name_registers_the_run(trained):
    import mlflow

    registered = trained["result"]["registered"]
    assert registered["name"] == AUTO_NAME and registered["version"] == "1" and registered["alias_moved"]
    assert registered["metric"] == METRIC
    assert registered["value"] == pytest.approx(trained["result"]["val/micro_f1"])
    client = mlflow.MlflowClient(trained["uri"], registry_uri=trained["uri"])
    assert str(client.get_model_version_by_alias(AUTO_NAME, "champion").version) == "1"
    mv = client.get_model_version(AUTO_NAME, "1")
    for section in ("## Labels", "## Top-k", "## Use", "## Data", "## Metrics"):
        assert section in mv.description, section


def test_alias_moves_only_when_the_metric_beats_its_holder(trained):
    import mlflow

    from mmlnb_dist.recipes.clip.pyfunc_model import register_run

    client = mlflow.MlflowClient(trained["uri"], registry_uri=trained["uri"])
    moved = [register_run(_fake_run(client, trained, v), "clip-alias", alias="champion", tracking_uri=trained["uri"],
                          metric=METRIC, mode="max").alias_moved for v in (0.6, 0.2, 0.6, 0.7, 0.65)]
    assert moved == [True, False, False, True, False]  # a tie keeps the holder; 0.65 < holder 0.7
    assert str(client.get_model_version_by_alias("clip-alias", "champion").version) == "4"


def test_registered_model_is_code_and_predicts_the_export_probabilities(trained, tmp_path):
    import mlflow
    import yaml

    from mmlnb_dist.core.tracking.registry import refuse_unpickling

    mlflow.set_tracking_uri(trained["uri"])
    mlflow.set_registry_uri(trained["uri"])
    folder = tmp_path / "model"
    folder = mlflow.artifacts.download_artifacts(f"models:/{AUTO_NAME}@champion", dst_path=str(folder),
                                                 tracking_uri=trained["uri"])
    from pathlib import Path

    folder = Path(folder)
    refuse_unpickling(folder)  # nothing in it is a pickle
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"].get("model_code_path")
    assert "python_model" not in mlmodel["flavors"]["python_function"]
    inputs = [c["name"] for c in yaml.safe_load(mlmodel["signature"]["inputs"])]
    outputs = [c["name"] for c in yaml.safe_load(mlmodel["signature"]["outputs"])]
    assert {"image", "description"} <= set(inputs)
    assert {f"prob_{c}" for c in VOCAB} | {"labels"} <= set(outputs)

    samples = raw_split(trained["shards"], "val")
    frame = pd.DataFrame({"image": [base64.b64encode(s["png"]).decode() for s in samples],
                          "description": [s["text"] for s in samples], "key": [s["key"] for s in samples]})
    served = mlflow.pyfunc.load_model(str(folder)).predict(frame)
    expected, classes = export_probabilities(trained["result"]["export_dir"], [s["png"] for s in samples],
                                             [s["text"] for s in samples])
    assert classes == VOCAB
    got = served[[f"prob_{c}" for c in classes]].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # the model's default selection: its top 3 labels, highest first
    for row, p in zip(served["labels"], expected):
        assert row.split("|") == [classes[i] for i in np.argsort(-p, kind="stable")[:3]]


def test_served_model_refuses_captions_it_reads_but_is_not_given(trained):
    """A CLIP model fused with its caption (concat) scored a row without one on empty text; it is refused as an
    invalid parameter (HTTP 400 when served)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    samples = raw_split(trained["shards"], "val")[:2]
    frame = pd.DataFrame({"image": [base64.b64encode(s["png"]).decode() for s in samples],
                          "description": ["", samples[1]["text"]], "key": [s["key"] for s in samples]})
    model = mlflow.pyfunc.load_model(f"models:/{AUTO_NAME}@champion")
    with pytest.raises(MlflowException) as err:
        model.predict(frame)
    assert err.value.get_http_status_code() == 400 and "1 of 2" in err.value.message, err.value.message


def test_register_command_registers_a_clip_run(trained, capsys):
    code = main(["register", "--config", str(CLIP_PROFILE), "--run", trained["run_id"], "--name", "clip-cli",
                 "--uri", trained["uri"]])
    out = capsys.readouterr().out
    assert code == 0 and "models:/clip-cli@champion -> version 1" in out, out
    import mlflow

    mv = mlflow.MlflowClient(trained["uri"], registry_uri=trained["uri"]).get_model_version("clip-cli", "1")
    assert float(mv.tags[METRIC]) == pytest.approx(trained["result"]["val/micro_f1"])



@pytest.mark.parametrize("spool", ["true", "false"])
def test_a_run_trained_on_the_command_line_registers_from_the_folder_train_printed(trained, tmp_path, capsys,
                                                                                   monkeypatch, spool):
    """The user's path: `train` prints its run folder and MLflow run id; `register --run <that folder>` needs no
    --config, --recipe or --uri (run from another directory): the run id and its store come from the folder's
    tracking record, the recipe (clip) and the selection metric (its best/val/micro_f1) from the run's own
    parameters, the model from the folder's export. Without the journal (`tracking.spool=false`) the folder
    still records its MLflow run (it used to record none: no id printed, the folder refused, and `pipeline`
    registered nothing, saying the run had no MLflow backend)."""
    import json

    import mlflow

    runs, uri = tmp_path / "runs", f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    code = main(["train", "--config", str(CLIP_PROFILE), f"data.shards={trained['shards']}", f"run.output_dir={runs}",
                 "run.name=cli", "data.loader.num_workers=0", "data.loader.image_size=32", "train.epochs=1",
                 "tracking.backends=[mlflow]", f"tracking.spool={spool}"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["run_dir"] == str(runs / "cli")
    assert any((runs / "cli" / "tracking").glob("*.jsonl")) == (spool == "true")
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    assert client.get_run(summary["mlflow_run_id"]).data.tags["run_dir"] == str(runs / "cli")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the default store would be ./runs/mlflow.db: not the run's
    code = main(["register", "--run", summary["run_dir"], "--name", "clip-folder"])
    out = capsys.readouterr().out
    assert code == 0 and "models:/clip-folder@champion -> version 1" in out, out
    mv = client.get_model_version("clip-folder", "1")
    assert mv.run_id == summary["mlflow_run_id"]
    assert float(mv.tags[METRIC]) == pytest.approx(summary["val/micro_f1"])
    assert list(elsewhere.iterdir()) == []  # no store was made where the command ran

    # a run id alone, no --config: the run's own recipe, not the fusion default
    assert main(["register", "--run", summary["mlflow_run_id"], "--name", "clip-id", "--uri", uri]) == 0
    assert float(client.get_model_version("clip-id", "1").tags[METRIC]) == pytest.approx(summary["val/micro_f1"])


def test_train_with_register_name_says_what_it_registered(trained, tmp_path, capsys):
    """`train ... tracking.register_name=NAME` registered without a word: neither the summary nor the console named
    the version or whether the alias moved to it."""
    import json

    code = main(["train", "--config", str(CLIP_PROFILE), f"data.shards={trained['shards']}",
                 f"run.output_dir={tmp_path / 'runs'}", "run.name=auto", "data.loader.num_workers=0",
                 "data.loader.image_size=32", "train.epochs=1", "tracking.backends=[mlflow]",
                 "tracking.register_name=clip-said"])
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert code == 0 and summary["registered"] == "models:/clip-said/1", summary
    assert "registered clip-said version 1" in err and "models:/clip-said@champion -> version 1" in err, err


def test_register_names_what_is_wrong_with_a_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "untracked").mkdir()
    assert main(["register", "--run", "untracked", "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert "untracked" in err and "tracking/train.json" in err and "tracking sync" in err, err
    assert main(["register", "--run", "runs/missing", "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert "runs/missing" in err and "neither a run folder nor an MLflow run id" in err, err
