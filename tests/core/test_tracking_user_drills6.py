"""What a new user hit in the tracking settings and commands (defect hunt, track 6); each test names it.

- `tracking.register_alias` / `tracking.register_name` that MLflow's registry refuses (`champ ion`, `latest`, `v2`,
  `nb/fusion`, `..`) were accepted by the config, unlike `register --alias/--name`: the whole training ran, a
  version was logged and registered, and only then did the alias fail, reported as "the tracking server failed
  the registration ... once the server is back" (a `register_later` that could not help).
- `tracking import FOLDER` of a run whose saved config names a tracking store that cannot be made here (a folder
  copied from a cluster: its `sqlite:///` path lies under what is a file on this machine) was a pydantic
  `ValidationError` traceback, `--uri` given or not: the config's tracking section was validated whole.
- The folder of another stage (`runs/NAME-describe`, `runs/NAME-evaluate-val`) given to `register --run` was told it
  had no training run on record and to `tracking import` it; that import (stage train by default) made a training
  run named NAME-train out of the describe run's metrics.
- The model card of a run whose folder a later run of the same `run.name` had taken over (`run.resume=false` into
  the same folder) showed the later run's config.yaml as the registered model's config: the card read the folder
  by the run's `run_dir` tag without asking whose folder it now is.
- `tracking sync` of a journal holding no event (its process killed while writing its first line) printed "sent 0
  event(s) to run None at None", and with `--uri` failed the whole sync ("has no start event", exit 1).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config, save_config
from mmlnb_dist.core.errors import ConfigError

from support.cli import run_cli

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "mmlnb_dist" / "profiles" / "cpu-demo.yaml"


@pytest.mark.parametrize("key, value, why", [
    ("register_alias", "champ ion", "alphanumerics"), ("register_alias", "latest", "reserved"),
    ("register_alias", "v2", "reserved"), ("register_name", "nb/fusion", "'/'"),
    ("register_name", "models:nb", "':'"), ("register_name", "a?b", "'?'"),
    ("register_name", "..", "path")])
def test_a_registry_name_or_alias_mlflow_refuses_is_a_config_error_before_training(key, value, why):
    with pytest.raises(ConfigError) as err:
        load_config(CPU_DEMO, [f"tracking.{key}={value}"])
    assert f"tracking.{key}" in str(err.value) and why in str(err.value), err.value


@pytest.mark.parametrize("override", ["tracking.register_alias=prod", "tracking.register_alias=best-2_b",
                                      "tracking.register_name=nb fusion"])
def test_a_registry_name_or_alias_mlflow_takes_is_still_accepted(override):
    load_config(CPU_DEMO, [override])


@pytest.fixture(scope="module")
def template_store(tmp_path_factory):
    """An empty MLflow SQLite store, made once: making one costs seconds (MLflow's schema migrations)."""
    import mlflow

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def test_import_of_a_folder_whose_saved_store_cannot_be_made_here_takes_uri_or_says_so(tmp_path, template_store):
    import shutil

    import mlflow
    import yaml

    run_dir = tmp_path / "runs" / "copied"
    run_dir.mkdir(parents=True)
    save_config(load_config(CPU_DEMO, [f"run.output_dir={tmp_path / 'runs'}", "run.name=copied",
                                       "tracking.backends=[stdout]"]), run_dir / "config.yaml")
    (tmp_path / "afile").write_text("not a folder")  # on the cluster, a folder
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    config["tracking"]["uri"] = f"sqlite:///{tmp_path}/afile/mlflow.db"
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "train/loss": 1.0}\n{"step": 1, "train/loss": 0.5}\n')
    (run_dir / "metrics.json").write_text("{}")

    code, _, err = run_cli(["tracking", "import", str(run_dir)])
    assert code == 2 and "Traceback" not in err and "afile" in err and "--uri" in err, err
    assert not (run_dir / "tracking").exists()  # refused before the journal was written

    store = tmp_path / "here.db"
    shutil.copy(template_store, store)
    code, out, err = run_cli(["tracking", "import", str(run_dir), "--uri", f"sqlite:///{store}"])
    assert code == 0, err
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    (run,) = client.search_runs([client.get_experiment_by_name(config["tracking"]["experiment"]).experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics == {"train/loss": 0.5}



def _stage_folder(root: Path, stage: str) -> Path:
    """A run folder another stage wrote (describe's `<name>-describe`): its config, metrics and shard sets."""
    run_dir = root / "runs" / f"a-{stage}"
    run_dir.mkdir(parents=True)
    save_config(load_config(CPU_DEMO, [f"run.output_dir={root / 'runs'}", "run.name=a",
                                       "tracking.backends=[stdout]"]), run_dir / "config.yaml")
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "describe/mean_words": 12.0}\n')
    (run_dir / "datasets.json").write_text('{"%s": [{"name": "demo:train", "context": "train"}]}' % stage)
    return run_dir


def test_import_of_another_stage_folder_as_a_training_run_is_refused_naming_its_stage(tmp_path):
    run_dir = _stage_folder(tmp_path, "describe")
    code, _, err = run_cli(["tracking", "import", str(run_dir), "--uri", f"sqlite:///{tmp_path}/mlflow.db"])
    assert code == 2 and "describe" in err and "--stage describe" in err, err
    assert not (run_dir / "tracking").exists() and not (tmp_path / "mlflow.db").exists()


def test_register_of_another_stage_folder_names_its_stage_not_import(tmp_path):
    run_dir = _stage_folder(tmp_path, "evaluate")
    (run_dir / "tracking").mkdir()
    (run_dir / "tracking" / "evaluate.json").write_text('{"run_id": "%s", "tracking_uri": "sqlite:///%s"}'
                                                         % ("e" * 32, tmp_path / "mlflow.db"))
    code, _, err = run_cli(["register", "--run", str(run_dir), "--name", "nb"])
    assert code == 2 and "evaluate" in err and "tracking import" not in err, err


def test_the_model_card_config_is_the_run_own_when_its_folder_now_holds_another_run(tmp_path):
    import json
    from types import SimpleNamespace

    from mmlnb_dist.core.tracking.card import run_config_text

    folder = tmp_path / "runs" / "a"
    (folder / "tracking").mkdir(parents=True)
    (folder / "config.yaml").write_text("train:\n  lr: 0.5\n")  # the second run's, same run.name
    (folder / "tracking" / "train.json").write_text(json.dumps({"run_id": "b" * 32}))

    class Client:
        def download_artifacts(self, run_id, path, dst):
            assert run_id == "a" * 32 and path == "config.yaml"
            (Path(dst) / path).write_text("train:\n  lr: 0.001\n")  # what run a logged
            return str(Path(dst) / path)

    run = SimpleNamespace(info=SimpleNamespace(run_id="a" * 32),
                          data=SimpleNamespace(tags={"run_dir": str(folder), "stage": "train"}))
    assert run_config_text(Client(), run) == "train:\n  lr: 0.001\n"
    (folder / "tracking" / "train.json").write_text(json.dumps({"run_id": "a" * 32}))  # its own folder still
    assert run_config_text(Client(), run) == "train:\n  lr: 0.5\n"


@pytest.mark.parametrize("content", ["", '{"op": "start", "run_na'])
@pytest.mark.parametrize("with_uri", [False, True])
def test_sync_of_a_journal_without_any_event_says_so_and_succeeds(tmp_path, content, with_uri):
    journal = tmp_path / "runs" / "x" / "tracking" / "train.jsonl"
    journal.parent.mkdir(parents=True)
    journal.write_text(content)
    uri = ["--uri", f"sqlite:///{tmp_path}/other.db"] if with_uri else []
    code, out, err = run_cli(["tracking", "sync", str(tmp_path / "runs"), *uri])
    assert code == 0 and "None" not in out + err and "skipped" in out and "no event" in out, out + err


@pytest.mark.parametrize("stage", ["evaluate", "describe"])
def test_register_of_an_untracked_stage_folder_names_its_stage_as_import_does(tmp_path, stage):
    """The two detections of another stage's folder disagreed: `register --run` looked only for that stage's MLflow
    record, so the folder of an untracked describe or evaluate run (`tracking.backends=[stdout]`, its shard sets in
    datasets.json) was told to `tracking import` itself, which then refused it as the folder of that stage."""
    run_dir = _stage_folder(tmp_path, stage)
    code, _, err = run_cli(["register", "--run", str(run_dir), "--name", "nb"])
    assert code == 2 and f"folder of a {stage} run" in err and "tracking import" not in err, err
