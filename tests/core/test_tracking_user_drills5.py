"""What a new user hit in the tracking commands (defect hunt, track 5); each test names it.

- A run named `tracking` (runs/tracking/, its journal in runs/tracking/tracking/train.jsonl) or a runs folder named
  `tracking` was never synced: `tracking sync` took the run's own metrics.jsonl for a journal (a `KeyError: 'op'`
  and a stray metrics.lock) and never looked below it, where the real journal was.
- The commands printed to run later (register after a lost server, the offline warning's sync, import's register)
  broke on a model name or run folder with a space.
- `tracking.uri=SQLITE:///...` ("schemes in any case") trained offline; `HTTP://` skipped the `/health` check.
- `register --run RUNS_FOLDER` or `--run NAME`, `tracking sync JOURNAL_FILE` or a missing path, and an empty
  `tracking.experiment` were answered with advice that could not help, or not until the run had trained offline.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.tracking import build_logger

from support.cli import run_cli
from support.offline_runs import journal_offline

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "mmlnb_dist" / "profiles" / "cpu-demo.yaml"


def _cfg(runs: Path, name: str, *extra: str):
    return load_config(CPU_DEMO, [f"run.output_dir={runs}", "tracking.log_environment=false", f"run.name={name}",
                                  f"tracking.uri=sqlite:///{runs / 'mlflow.db'}", *extra])


@pytest.fixture(scope="module")
def template_store(tmp_path_factory):
    """An empty MLflow SQLite store, made once: making one costs seconds (MLflow's schema migrations)."""
    import mlflow

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def _offline_run(runs: Path, name: str, monkeypatch, template_store) -> Path:
    """A run journaled with its store unreachable (stdout and mlflow backends, as cpu-demo), then the store made."""
    run_dir = journal_offline(monkeypatch, _cfg(runs, name), runs / name,
                              [(0, {"train/loss": 1.0}), (1, {"train/loss": 0.5})])
    shutil.copy(template_store, runs / "mlflow.db")
    return run_dir


@pytest.mark.parametrize("runs_name, sync_what", [("runs", "runs"), ("runs", "run"), ("tracking", "runs")])
def test_a_run_or_runs_folder_named_tracking_is_synced_from_its_journal(tmp_path, monkeypatch, template_store,
                                                                        runs_name, sync_what):
    import mlflow

    runs = tmp_path / runs_name
    run_name = "tracking" if runs_name == "runs" else "r"
    run_dir = _offline_run(runs, run_name, monkeypatch, template_store)
    assert (run_dir / "metrics.jsonl").is_file()  # the stdout backend's records, no journal
    code, out, err = run_cli(["tracking", "sync", str(runs if sync_what == "runs" else run_dir)])
    assert code == 0, err
    assert "sent" in out and "metrics.jsonl" not in out + err
    assert not (run_dir / "metrics.lock").exists()
    record = json.loads((run_dir / "tracking" / "train.json").read_text())
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    assert [(m.step, m.value) for m in client.get_metric_history(record["run_id"], "train/loss")] == \
        [(0, 1.0), (1, 0.5)]
    assert client.get_run(record["run_id"]).info.status == "FINISHED"


@pytest.mark.parametrize("online, raises", [(False, None), (True, "metric")])
def test_the_register_later_command_is_one_a_shell_runs_as_printed(tmp_path, online, raises):
    """`tracking.register_name=my model` with the server lost: the printed `register --run DIR --name my model`
    registered a model named `my` (and `model` was an unknown argument); a run folder with a space broke it too."""
    import shlex

    from mmlnb_dist.core.tracking.metric_name import UnknownMetricError
    from mmlnb_dist.core.tracking.registry import register_or_explain

    def register(run_id):
        raise UnknownMetricError("no such metric")

    run_dir = tmp_path / "my runs" / "r 1"
    res = register_or_explain("abc" if online else None, online, "my model", run_dir, register)
    assert res["registered"] is False
    words = shlex.split(res["register_later"])
    register_words = words[words.index("register"):]
    assert register_words[:5] == ["register", "--run", str(run_dir), "--name", "my model"]
    if not online:
        assert words[:4] == ["mmlnb-dist", "tracking", "sync", str(run_dir)]


def test_a_tracking_uri_scheme_in_capitals_is_tracked_to_as_the_docs_promise(tmp_path, template_store):
    """`tracking.uri=SQLITE:///...` passed `config validate` ("schemes in any case"), then MLflow could not load the
    dialect `SQLITE`: the whole training ran offline, and every `tracking sync` failed on the recorded URI."""
    import mlflow

    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(template_store, runs / "mlflow.db")
    cfg = _cfg(runs, "caps", f"tracking.uri=SQLITE:///{runs / 'mlflow.db'}")
    logger = build_logger(cfg.tracking, cfg.run, 0, runs / "caps", "train")
    logger.log_metrics({"train/loss": 1.0}, step=0)
    logger.close()
    assert logger.online
    client = mlflow.MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    assert [m.value for m in client.get_metric_history(logger.run_id, "train/loss")] == [1.0]
    assert json.loads((runs / "caps" / "tracking" / "train.json").read_text())["tracking_uri"] == \
        f"sqlite:///{runs / 'mlflow.db'}"  # what `register --run` and `tracking sync` open


def test_a_lost_server_named_with_a_scheme_in_capitals_is_found_lost_at_once(tmp_path, monkeypatch):
    """`HTTP://127.0.0.1:PORT`: its `/health` was never asked (only `http://` was), so a dead server was taken for a
    live one and the run went offline only after MLflow's first failed call."""
    from mmlnb_dist.core.tracking.server import default_tracking_uri, free_port, server_reachable

    cfg = _cfg(tmp_path / "runs", "caps", f"tracking.uri=HTTP://127.0.0.1:{free_port()}")
    uri = default_tracking_uri(cfg.tracking, cfg.run.output_dir)
    assert uri.startswith("http://") and server_reachable(uri, 1.0) is False


def test_the_offline_warning_names_a_sync_command_a_shell_runs_as_printed(tmp_path, monkeypatch, template_store,
                                                                          caplog):
    """run.output_dir with a space (`/data/my runs`): the warning's `tracking sync /data/my runs/r` synced nothing
    (two folders, neither the run)."""
    import shlex

    run_dir = _offline_run(tmp_path / "my runs", "r", monkeypatch, template_store)
    (warning,) = [r.getMessage() for r in caplog.records if "tracking sync" in r.getMessage()]
    command = warning.split("`")[1]
    assert shlex.split(command) == ["mmlnb-dist", "tracking", "sync", str(run_dir)]
    code, out, err = run_cli(shlex.split(command)[1:])
    assert code == 0 and "sent" in out, err


def test_register_with_a_runs_folder_or_a_run_name_says_what_run_takes(tmp_path, monkeypatch, template_store):
    """`register --run runs` (the runs folder) was told to `tracking import runs` / `tracking sync runs`, which
    could not help; `--run r` (the run's name) was only "Run with id=r not found"."""
    runs = tmp_path / "runs"
    run_dir = _offline_run(runs, "r", monkeypatch, template_store)
    assert run_cli(["tracking", "sync", str(run_dir)])[0] == 0
    code, out, err = run_cli(["register", "--run", str(runs), "--uri", f"sqlite:///{runs / 'mlflow.db'}"])
    assert code == 2 and f"--run {run_dir}" in err and "tracking import" not in err, err
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["register", "--run", "r", "--uri", f"sqlite:///{runs / 'mlflow.db'}"])
    assert code == 2 and "run folder" in err and "32-hex" in err, err


def test_an_empty_experiment_name_is_a_config_error(tmp_path):
    """`experiment: ""` in a YAML config passed `config validate`; MLflow refused it at the run's start, so the run
    trained offline and every `tracking sync` of its journal failed ("Invalid experiment name")."""
    import yaml

    from mmlnb_dist.core.errors import ConfigError

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"tracking": {"experiment": ""}}))
    with pytest.raises(ConfigError, match="tracking.experiment"):
        load_config(path, [])


def test_sync_of_a_journal_file_or_a_missing_path_says_what_to_give(tmp_path, monkeypatch, template_store):
    """`tracking sync runs/r/tracking/train.jsonl` (the file the offline warning names) said "no MLflow journal in"
    the journal itself; a missing path read as a folder without journals."""
    run_dir = _offline_run(tmp_path / "runs", "r", monkeypatch, template_store)
    code, out, err = run_cli(["tracking", "sync", str(run_dir / "tracking" / "train.jsonl")])
    assert code == 2 and f"tracking sync {run_dir}`" in err and "no MLflow journal" not in err, err
    code, out, err = run_cli(["tracking", "sync", str(run_dir), str(tmp_path / "typo")])
    assert code == 2 and "no such folder" in err and "nothing was sent" in err, err


def test_import_of_a_tracked_run_names_a_sync_command_a_shell_runs_as_printed(tmp_path, monkeypatch, template_store):
    import shlex

    run_dir = _offline_run(tmp_path / "my runs", "r", monkeypatch, template_store)
    (run_dir / "config.yaml").write_text("{}\n")  # what every run folder holds
    code, out, err = run_cli(["tracking", "import", str(run_dir)])
    assert code == 2 and "already has an MLflow run" in err, err
    assert shlex.split(err.split("`")[1]) == ["mmlnb-dist", "tracking", "sync", str(run_dir)]


def test_register_of_an_untracked_folder_names_import_and_sync_commands_a_shell_runs(tmp_path):
    import shlex

    run_dir = tmp_path / "my runs" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("{}\n")
    code, out, err = run_cli(["register", "--run", str(run_dir)])
    assert code == 2, err
    commands = [shlex.split(part) for part in err.split("`")[1::2] if part.startswith("mmlnb-dist")]
    assert [c[:3] for c in commands] == [["mmlnb-dist", "tracking", "import"], ["mmlnb-dist", "tracking", "sync"]]
    assert all(c[3:] == [str(run_dir)] for c in commands), err


def test_register_refuses_a_name_with_surrounding_spaces_before_any_work(tmp_path):
    """`--name " spaced "` registered the model ' spaced ': `predict --model models:/spaced@champion` found none."""
    code, out, err = run_cli(["register", "--run", str(tmp_path / "nowhere"), "--name", " spaced "])
    assert code == 2 and "--name ' spaced '" in err and "--name spaced?" in err, err
