"""What `register` compares and registers is the run's own: its validation set, its export, its metric.

- A run made by `tracking import` carried no dataset inputs, so the champion alias moved on a score from another
  validation set ("1.0 beats 0.667"), where the same run tracked live was refused as not comparable. The import now
  logs the inputs the live run logs (recorded in the run folder by the logger at training time), and a run with no
  recorded validation set is never compared: the holder keeps the alias, and the reason says how to move it.
- `register --run A --export B/export` registered B's weights under A's metrics, lineage and model card.
- A mistyped `--metric` registered a first version with no metric, and every later one "None does not beat None".
"""
from __future__ import annotations

import json
import shutil

import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.core.tracking.journal import apply_event
from support.fusion import make_shards, tiny_config

METRIC = "best/val/balanced_accuracy"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One fusion run of 1 epoch trained with the stdout backend only (runs/u3), and runs/oth: a copy of it with
    other weights in its export (another run's model), neither imported yet."""
    from safetensors.torch import load_file, save_file

    from mmlnb_dist.config import save_config

    root = tmp_path_factory.mktemp("lineage")
    shards = make_shards(root, n=36, size=32)
    cfg = tiny_config(shards, root / "runs", "u3", ["data.loader.image_size=32", "train.epochs=1"])
    assert main(["train", "--config", str(save_config(cfg, root / "u3.yaml"))]) == 0
    own, other = root / "runs" / "u3", root / "runs" / "oth"
    shutil.copytree(own, other)
    weights = other / "export" / "model.safetensors"
    save_file({k: v + 1 for k, v in load_file(str(weights)).items()}, str(weights))
    uri = f"sqlite:///{(root / 'runs' / 'mlflow.db').resolve()}"
    return {"root": root, "shards": shards, "u3": own, "oth": other, "uri": uri}


def _client(uri):
    import mlflow

    return mlflow.MlflowClient(uri, registry_uri=uri)


def _imported(runs, which: str) -> str:
    """The MLflow run id of runs/<which>, imported once."""
    folder = runs[which]
    if not (folder / "tracking" / "train.json").is_file():
        assert main(["tracking", "import", str(folder)]) == 0
    return json.loads((folder / "tracking" / "train.json").read_text())["run_id"]


def _fake_run(runs, value: float, val_spec=None) -> str:
    """Another 'training run' of u3's export scored `value`, with the validation set `val_spec` (None: none)."""
    client, src = _client(runs["uri"]), _client(runs["uri"]).get_run(_imported(runs, "u3"))
    run = client.create_run(src.info.experiment_id, tags={"run_dir": src.data.tags["run_dir"]})
    client.log_metric(run.info.run_id, "val/balanced_accuracy", value)
    if val_spec is not None:
        apply_event(client, run.info.run_id, {"op": "inputs", "datasets": [val_spec]})
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _register(runs, run_id: str, name: str):
    from mmlnb_dist.recipes.fusion.pyfunc_model import register_run

    return register_run(run_id, name, alias="champion", tracking_uri=runs["uri"], metric=METRIC, mode="max")


def _other_val_set(value_name: str = "other"):
    return {"name": f"{value_name}:val", "digest": "e" * 16, "source": f"/data/{value_name}", "context": "val",
            "profile": {"num_samples": 9, "manifest_sha256": "e" * 64, "provenance": {}}}


def test_an_imported_run_carries_the_dataset_inputs_a_live_run_logs(runs):
    from mmlnb_dist.core.tracking.registry import scored_on
    from mmlnb_dist.data.shardset import ShardSet

    run = _client(runs["uri"]).get_run(_imported(runs, "u3"))
    live = ShardSet.open(runs["shards"]).dataset_specs()  # what the tracked run's logger logs
    logged = {(i.dataset.name, i.dataset.digest, next(t.value for t in i.tags if t.key == "mlflow.data.context"))
              for i in run.inputs.dataset_inputs}
    assert logged == {(s["name"], s["digest"], s["context"]) for s in live}
    assert scored_on(run, METRIC) == (f"{runs['shards'].name}:val", ShardSet.open(runs["shards"]).digest)


def test_an_imported_run_scored_on_another_validation_set_does_not_take_the_alias(runs):
    holder = _register(runs, _fake_run(runs, 0.0, _other_val_set()), "lin-import")
    assert holder.alias_moved
    imported = _register(runs, _imported(runs, "u3"), "lin-import")
    assert not imported.alias_moved
    assert "not comparable" in imported.reason and "other:val" in imported.reason
    assert str(_client(runs["uri"]).get_model_version_by_alias("lin-import", "champion").version) == "1"


def test_a_run_without_a_recorded_validation_set_is_not_compared(runs):
    _register(runs, _imported(runs, "u3"), "lin-unknown")
    unknown = _register(runs, _fake_run(runs, 2.0), "lin-unknown")  # scored, but on what?
    assert not unknown.alias_moved
    assert "not comparable" in unknown.reason and "no 'val' dataset input" in unknown.reason
    assert "version 1 keeps 'champion'" in unknown.reason
    assert f"set_registered_model_alias('lin-unknown', 'champion', {unknown.version})" in unknown.reason

    _register(runs, _fake_run(runs, 0.0), "lin-unknown-holder")  # the holder's set is the unknown one
    known = _register(runs, _imported(runs, "u3"), "lin-unknown-holder")
    assert not known.alias_moved and "version 1's run" in known.reason


def test_another_runs_export_is_refused_by_name(runs, capsys):
    _imported(runs, "u3")
    _imported(runs, "oth")
    capsys.readouterr()
    code = main(["register", "--run", str(runs["u3"]), "--name", "lin-export", "--export",
                 str(runs["oth"] / "export")])
    err = capsys.readouterr().err
    assert code == 2 and str(runs["oth"] / "export") in err and str(runs["u3"]) in err
    assert len(err.strip().splitlines()) == 1
    assert not _client(runs["uri"]).search_registered_models("name='lin-export'")


def test_a_copy_of_the_runs_own_export_is_registered(runs, tmp_path, capsys):
    _imported(runs, "u3")
    copy = tmp_path / "shipped"
    shutil.copytree(runs["u3"] / "export", copy)
    assert main(["register", "--run", str(runs["u3"]), "--name", "lin-copy", "--export", str(copy)]) == 0
    assert main(["register", "--run", str(runs["u3"]), "--name", "lin-own", "--export",
                 str(runs["u3"] / "export")]) == 0


@pytest.mark.parametrize("how", [["--metric", "best/val/balanced_acc"]])
def test_a_mistyped_metric_is_refused_before_anything_is_registered(runs, capsys, how):
    _imported(runs, "u3")
    capsys.readouterr()
    code = main(["register", "--run", str(runs["u3"]), "--name", "lin-metric", *how])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "best/val/balanced_acc" in err and "did you mean best/val/balanced_accuracy" in err
    assert "val/balanced_accuracy" in err and "val/loss" in err  # the metrics the run has
    assert not _client(runs["uri"]).search_registered_models("name='lin-metric'")


def test_a_mistyped_register_metric_is_refused_before_training(capsys):
    """A training whose `tracking.register_metric` names no metric of its recipe ran to its end and was then left
    unregistered; the config is now refused when it is read, as a mistyped `train.best_metric` is."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"tracking.register_metric: 'best/val/balanced_acc' .*did you mean "
                                          r"'best/val/balanced_accuracy'\?"):
        load_config("cpu-demo", ["tracking.register_metric=best/val/balanced_acc"])
    with pytest.raises(ConfigError, match=r"tracking.register_metric: 'balanced_accuracy' .*\[best/\]val/<metric>"):
        load_config("cpu-demo", ["tracking.register_metric=balanced_accuracy"])
    assert main(["config", "validate", "--config", "clip-multilabel", "tracking.register_metric=val/micro_f1"]) == 0
    for good in ("best/val/loss", "val/auroc", "test/balanced_accuracy"):
        assert load_config("cpu-demo", [f"tracking.register_metric={good}"]).tracking.register_metric == good
