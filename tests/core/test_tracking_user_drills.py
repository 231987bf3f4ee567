"""What a new user hit in the tracking commands and the MLflow logger (defect hunt, track 3); each test names it.

- A metric name MLflow refuses (`val/acc@5`, or more than 250 characters) turned the run's tracking off, and since
  the journal sends in order, every later resume and `tracking sync` failed on the same event, for good.
- `mlflow-server` and `tracking import` gave tracebacks for a store or folder under a file; `register --name ..`
  was refused by MLflow only after the model was logged; a name with a quote made a copy on every rerun.
- `tracking import` refused a killed run's cut-short last record, and wrote a `--stage ../x` journal outside
  `tracking/`; a deleted experiment or run was logged into (or refused) with the wrong advice; one damaged journal
  line was reported as several, and non-UTF-8 bytes crashed the read.
- `register` took a missing `--export`, a malformed `--uri`, a deleted run or a folder a live job holds as far as
  a traceback (or silently); `tracking sync A TYPO C` stopped halfway.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.tracking import build_logger
from mmlnb_dist.core.tracking.server import free_port

from support.cli import run_cli
from support.offline_runs import journal_offline

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"


def _cfg(tmp_path: Path, *extra: str):
    return load_config(CPU_DEMO, [f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[mlflow]",
                                  "tracking.log_environment=false", "run.name=t", *extra])


@pytest.fixture(scope="module")
def template_store(tmp_path_factory):
    """An empty MLflow SQLite store, made once: making one costs seconds (MLflow's schema migrations)."""
    import mlflow

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, template_store):
    """`<tmp_path>/runs/mlflow.db` (the embedded default store of `_cfg`), a copy of the empty template."""
    (tmp_path / "runs").mkdir(exist_ok=True)
    shutil.copy(template_store, tmp_path / "runs" / "mlflow.db")
    return tmp_path / "runs" / "mlflow.db"


def _client(tmp_path: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}")


def test_a_metric_name_mlflow_refuses_is_logged_under_a_valid_name_and_tracking_goes_on(tmp_path, store, caplog):
    cfg = _cfg(tmp_path)
    logger = build_logger(cfg.tracking, cfg.run, 0, tmp_path / "runs" / "t", "train")
    logger.log_metrics({"train/loss": 1.0, "val/acc@5": 0.5}, step=0)
    logger.log_metrics({"train/loss": 0.5, "val/acc@5": 0.75}, step=1)
    assert logger.online
    logger.close()
    client = _client(tmp_path)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(logger.run_id, "train/loss")] == [(0, 1.0), (1, 0.5)]
    assert sorted((m.step, m.value) for m in client.get_metric_history(logger.run_id, "val/acc_5")) == \
        [(0, 0.5), (1, 0.75)]
    warned = [r.getMessage() for r in caplog.records if "val/acc@5" in r.getMessage()]
    assert len(warned) == 1 and "val/acc_5" in warned[0]  # once, naming both, not once a step


def test_two_metric_names_mlflow_takes_as_one_key_are_refused_naming_both(tmp_path, store):
    """`val/acc@5` and `val/acc_5` both go to MLflow as `val/acc_5`: a SQLite store keeps both values at one step
    under that key, one metric's history mixed with the other's. Refused when logged, in one call or two."""
    cfg = _cfg(tmp_path)
    logger = build_logger(cfg.tracking, cfg.run, 0, tmp_path / "runs" / "t", "train")
    with pytest.raises(ValueError, match=r"'val/acc@5' and 'val/acc_5' are both logged to MLflow as 'val/acc_5'"):
        logger.log_metrics({"val/acc@5": 0.5, "val/acc_5": 0.9}, step=0)
    logger.log_metrics({"val/acc@5": 0.5}, step=1)  # the first name alone goes on
    with pytest.raises(ValueError, match="'val/acc@5' and 'val/acc_5'"):
        logger.log_metrics({"val/acc_5": 0.9}, step=1)
    logger.close()
    history = _client(tmp_path).get_metric_history(logger.run_id, "val/acc_5")
    assert [(m.step, m.value) for m in history] == [(1, 0.5)]


def test_a_journal_holding_a_refused_metric_name_still_syncs(tmp_path, store, monkeypatch):
    """Journaled offline (or by a version before the fix): `tracking sync` used to fail on it every time."""
    cfg = _cfg(tmp_path)
    run_dir = journal_offline(monkeypatch, cfg, tmp_path / "runs" / "t",
                              [(0, {"val/f1 (macro)": 0.25}), (1, {"train/loss": 0.5})])
    code, out, err = run_cli(["tracking", "sync", str(run_dir)])
    assert code == 0, err
    client = _client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"val/f1 _macro_": 0.25, "train/loss": 0.5}


def test_mlflow_server_store_or_artifacts_under_a_file_is_refused_by_flag(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    code, out, err = run_cli(["mlflow-server", "--port", str(free_port()), "--backend-store", f"sqlite:///{blocker}/m.db",
                              "--artifacts-dir", str(tmp_path / "art")])
    assert code == 2 and "--backend-store" in err and str(blocker) in err, err
    code, out, err = run_cli(["mlflow-server", "--port", str(free_port()), "--backend-store", f"sqlite:///{tmp_path}/s/m.db",
                              "--artifacts-dir", str(blocker / "art")])
    assert code == 2 and "--artifacts-dir" in err and str(blocker) in err, err


def test_a_second_registration_under_a_name_with_a_quote_gives_the_same_version_back(tmp_path, store):
    """`name='it's'` broke the registry search that finds an earlier registration of the same run and weights:
    the error was taken for "nothing registered yet", so every rerun of `register --name "it's"` made a copy."""
    import mlflow

    from mmlnb_dist.core.tracking.versions import ARTIFACTS_TAG, registered_before

    uri = f"sqlite:///{store}"
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    for name in ("it's", "plain", """both ' and " """):
        client.create_registered_model(name)
        version = client.create_model_version(name, source="file:///nowhere", run_id=run_id).version
        client.set_model_version_tag(name, version, ARTIFACTS_TAG, "d1")
    assert registered_before(client, "it's", run_id, "d1") == "1"
    assert registered_before(client, "it's", run_id, "other weights") is None
    assert registered_before(client, """both ' and " """, run_id, "d1") == "1"
    assert registered_before(client, "new name", run_id, "d1") is None


def test_register_refuses_a_model_name_mlflow_reads_as_a_path_before_any_work(tmp_path):
    """`--name ..` passed the command's checks; MLflow refused it only after the model was logged to the run."""
    for name in ("..", "."):
        code, out, err = run_cli(["register", "--run", str(tmp_path / "nowhere"), "--name", name])
        assert code == 2 and f"--name {name!r}" in err, err


def test_a_killed_run_whose_last_metric_record_was_cut_short_is_imported_as_killed(tmp_path, store):
    """`tracking import` imports a run that never finished as KILLED, but a kill mid-write leaves its last
    metrics.jsonl line cut short, and the import refused the whole folder over it ("not a metric record")."""
    from mmlnb_dist.config import save_config

    run_dir = tmp_path / "runs" / "t"
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(_cfg(tmp_path, "tracking.backends=[stdout]"), run_dir / "config.yaml")
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "train/loss": 1.0}\n{"step": 1, "train/loss": 0.5}\n'
                                           '{"step": 2, "train/lo')
    code, out, err = run_cli(["tracking", "import", str(run_dir)])
    assert code == 0, err
    client = _client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("mmlnb-demo").experiment_id])
    assert run.info.status == "KILLED"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")] == [(0, 1.0),
                                                                                                  (1, 0.5)]


def test_a_deleted_experiment_is_named_with_the_way_out(tmp_path, store, caplog):
    """An experiment deleted in the MLflow UI keeps its name: each later run went offline with MLflow's "must be in
    the 'active' state" and the advice to `tracking sync` later, which failed the same way for good."""
    cfg = _cfg(tmp_path)
    _client(tmp_path).create_experiment(cfg.tracking.experiment)
    client = _client(tmp_path)
    exp_id = client.get_experiment_by_name(cfg.tracking.experiment).experiment_id
    client.delete_experiment(exp_id)
    logger = build_logger(cfg.tracking, cfg.run, 0, tmp_path / "runs" / "t", "train")
    assert not logger.online
    logger.close()
    (warning,) = [r.getMessage() for r in caplog.records if "tracking disabled" in r.getMessage()]
    assert f"experiment '{cfg.tracking.experiment}'" in warning and "deleted" in warning
    assert f"mlflow experiments restore --experiment-id {exp_id}" in warning and "tracking.experiment" in warning


def test_a_resume_after_its_mlflow_run_was_deleted_logs_to_a_live_run_with_the_whole_history(tmp_path, store):
    """A run deleted in the MLflow UI can still be fetched by id: the resumed process (and `tracking sync`) kept
    logging into it, out of sight in the UI and gone at the next `mlflow gc`. Without the journal
    (`tracking.spool=false`) a resume already started a new run; with it, the new run gets the journal's history."""
    run_dir = tmp_path / "runs" / "t"
    cfg = _cfg(tmp_path)
    first = build_logger(cfg.tracking, cfg.run, 0, run_dir, "train")
    first.log_metrics({"train/loss": 1.0}, step=0)
    first.close("KILLED")
    client = _client(tmp_path)
    client.delete_run(first.run_id)
    resumed = build_logger(cfg.tracking, _cfg(tmp_path, "run.resume=true").run, 0, run_dir, "train")
    resumed.log_metrics({"train/loss": 0.5}, step=1)
    resumed.close()
    assert resumed.run_id != first.run_id
    run = client.get_run(resumed.run_id)
    assert run.info.lifecycle_stage == "active" and run.info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(resumed.run_id, "train/loss")] == [(0, 1.0),
                                                                                                   (1, 0.5)]


def test_an_import_into_a_store_that_cannot_be_opened_says_how_to_upload_it_elsewhere(tmp_path, store):
    """`tracking import FOLDER --uri sqlite:///<file>/x.db` ended in a FileExistsError traceback with the journal
    written, so a second import was refused, and the `tracking sync FOLDER` it named went to the same bad store."""
    from mmlnb_dist.config import save_config

    run_dir = tmp_path / "runs" / "t"
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(_cfg(tmp_path, "tracking.backends=[stdout]"), run_dir / "config.yaml")
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "train/loss": 1.0}\n')
    (run_dir / "metrics.json").write_text("{}")
    (tmp_path / "afile").write_text("not a folder")
    code, out, err = run_cli(["tracking", "import", str(run_dir), "--uri", f"sqlite:///{tmp_path}/afile/x.db"])
    assert code == 2 and "afile" in err and f"tracking sync {run_dir} --uri" in err, err
    good = f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    code, out, err = run_cli(["tracking", "sync", str(run_dir), "--uri", good])
    assert code == 0, err
    client = _client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("mmlnb-demo").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics == {"train/loss": 1.0}


def test_a_damaged_journal_line_is_reported_once_by_its_number_and_the_rest_is_synced(tmp_path, store, monkeypatch):
    """One damaged line was warned about once per read of the journal (4 times in one `tracking sync`), with no line
    number: it read as several damaged lines, and nothing said which. Bytes that are not UTF-8 crashed the read."""
    run_dir = journal_offline(monkeypatch, _cfg(tmp_path), tmp_path / "runs" / "t",
                              [(step, {"train/loss": float(step)}) for step in range(3)])
    journal = run_dir / "tracking" / "train.jsonl"
    lines = journal.read_bytes().splitlines(True)
    damaged = next(n for n, line in enumerate(lines, 1) if b'"step": 1' in line)
    lines[damaged - 1] = lines[damaged - 1][:15] + b"\x00\xff\xfe\n"  # not even UTF-8
    journal.write_bytes(b"".join(lines))
    code, out, err = run_cli(["tracking", "sync", str(run_dir)])
    assert code == 0, err
    warned = [line for line in err.splitlines() if "unreadable" in line]
    assert len(warned) == 1 and f"line {damaged}" in warned[0], warned
    client = _client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("mmlnb-demo").experiment_id])
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "train/loss")] == [(0, 0.0),
                                                                                                    (2, 2.0)]


def test_a_metric_name_longer_than_mlflow_takes_is_cut_to_its_limit_and_tracking_goes_on(tmp_path, store):
    """MLflow refuses a metric name of more than 250 characters, which turned tracking off as a refused character
    did."""
    cfg = _cfg(tmp_path)
    long_name = "val/" + "per_class_f1_" * 30
    logger = build_logger(cfg.tracking, cfg.run, 0, tmp_path / "runs" / "t", "train")
    logger.log_metrics({long_name: 0.5, "train/loss": 1.0}, step=0)
    assert logger.online
    logger.close()
    run = _client(tmp_path).get_run(logger.run_id)
    assert run.data.metrics == {long_name[:250]: 0.5, "train/loss": 1.0}


def test_an_import_under_a_stage_that_is_a_path_is_refused_before_anything_is_written(tmp_path):
    """`--stage ../x` wrote the journal and the run record beside the run folder's files (`<run_dir>/x.jsonl`),
    where neither `tracking sync` nor a resume looks, after making the MLflow run."""
    from mmlnb_dist.config import save_config

    run_dir = tmp_path / "runs" / "t"
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(_cfg(tmp_path, "tracking.backends=[stdout]"), run_dir / "config.yaml")
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "train/loss": 1.0}\n')
    before = sorted(p.name for p in run_dir.iterdir())
    for stage in ("../x", "a/b", ""):
        code, out, err = run_cli(["tracking", "import", str(run_dir), "--stage", stage])
        assert code == 2 and f"--stage {stage!r}" in err, err
    assert sorted(p.name for p in run_dir.iterdir()) == before
    assert not (tmp_path / "runs" / "mlflow.db").exists()


def test_register_refuses_an_export_that_is_no_folder_by_flag(tmp_path, store):
    """`register --export` of a mistyped path ended in a FileNotFoundError traceback (from the ownership check)."""
    from mmlnb_dist.config import save_config

    run_dir = tmp_path / "runs" / "t"
    (run_dir / "export").mkdir(parents=True)
    save_config(_cfg(tmp_path, "tracking.backends=[stdout]"), run_dir / "config.yaml")
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "val/loss": 1.0}\n')
    assert run_cli(["tracking", "import", str(run_dir)])[0] == 0
    (tmp_path / "afile").write_text("not a model folder")
    for export, why in ((tmp_path / "missing", "no such folder"), (tmp_path / "afile", "not a folder")):
        code, out, err = run_cli(["register", "--run", str(run_dir), "--metric", "val/loss", "--export", str(export)])
        assert code == 2 and f"--export {export}: {why}" in err, err


def test_a_resume_without_the_journal_logs_a_renamed_metric_once_a_step(tmp_path, store):
    """Without the journal (`tracking.spool=false`) a resume reads the steps the killed process logged from MLflow,
    under the names MLflow took (`val/acc_5`), and compared them with the names given (`val/acc@5`): those steps
    were logged twice."""
    run_dir = tmp_path / "runs" / "t"
    first = build_logger(_cfg(tmp_path, "tracking.spool=false").tracking, _cfg(tmp_path).run, 0, run_dir, "train")
    for step in range(3):
        first.log_metrics({"val/acc@5": float(step)}, step=step)
    first.close("KILLED")
    cfg = _cfg(tmp_path, "tracking.spool=false", "run.resume=true")
    resumed = build_logger(cfg.tracking, cfg.run, 0, run_dir, "train")
    resumed.resumed_at(0)
    for step in (1, 2):
        resumed.log_metrics({"val/acc@5": 10.0 + step}, step=step)
    resumed.close()
    assert resumed.run_id == first.run_id
    history = _client(tmp_path).get_metric_history(first.run_id, "val/acc_5")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.0), (1, 1.0), (2, 2.0)]


def test_register_refuses_a_deleted_run_before_any_work(tmp_path, store):
    """A run deleted in the MLflow UI is still found by id: `register` packaged its model, then MLflow refused to
    log into it ("in the deleted state"), a traceback."""
    import json

    from mmlnb_dist.config import save_config

    run_dir = tmp_path / "runs" / "t"
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(_cfg(tmp_path, "tracking.backends=[stdout]"), run_dir / "config.yaml")
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "val/loss": 1.0}\n')
    assert run_cli(["tracking", "import", str(run_dir)])[0] == 0
    run_id = json.loads((run_dir / "tracking" / "train.json").read_text())["run_id"]
    _client(tmp_path).delete_run(run_id)
    code, out, err = run_cli(["register", "--run", str(run_dir), "--metric", "val/loss"])
    assert code == 2 and f"run {run_id}" in err and "deleted" in err and f"mlflow runs restore --run-id {run_id}" \
        in err, err


@pytest.mark.parametrize("command", [["register", "--run", "0123abcd"], ["tracking", "import", "RUN"],
                                     ["tracking", "sync", "RUN"]])
def test_a_malformed_uri_flag_is_refused_by_flag_before_any_work(tmp_path, command):
    """`--uri sqlite://x.db` (two slashes) was a SQLAlchemy traceback from `register`, an MLflow error from `sync`,
    and `tracking import` wrote the folder's journal first (a second import was then refused)."""
    from mmlnb_dist.config import save_config

    run_dir = tmp_path / "runs" / "t"
    run_dir.mkdir(parents=True)
    save_config(_cfg(tmp_path, "tracking.backends=[stdout]"), run_dir / "config.yaml")
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "val/loss": 1.0}\n')
    if command[-1] == "RUN":
        command = [*command[:-1], str(run_dir)]
        if command[1] == "sync":
            assert run_cli(["tracking", "import", str(run_dir), "--uri", f"sqlite:///{tmp_path}/a.db"])[0] == 0
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    code, out, err = run_cli([*command, "--uri", "sqlite://x.db"])
    assert code == 2 and "--uri" in err and "sqlite:///PATH" in err, err
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_sync_of_several_folders_refuses_one_without_a_journal_before_sending_anything(tmp_path, store,
                                                                                         monkeypatch):
    """`tracking sync runs/a runs/typo runs/c` sent a's journal, then stopped at the typo: c was never synced, and
    the refusal did not say a had been."""
    from mmlnb_dist.core.tracking.journal import Spool

    cfg = _cfg(tmp_path)
    for name in ("a", "c"):
        journal_offline(monkeypatch, cfg, tmp_path / "runs" / name, [(0, {"train/loss": 1.0})])
    folders = [str(tmp_path / "runs" / n) for n in ("a", "typo", "c")]
    code, out, err = run_cli(["tracking", "sync", *folders])
    assert code == 2 and folders[1] in err, err
    assert all(Spool.for_stage(tmp_path / "runs" / n, "train").pending() for n in ("a", "c"))


def test_register_refuses_a_run_folder_a_live_job_still_writes(tmp_path, store):
    """`register --run runs/t` while `train` still ran in the folder registered whatever export it held (a rerun
    into the folder: the earlier run's weights, under the new run's metrics), without a word."""
    from mmlnb_dist.config import save_config
    from mmlnb_dist.core.runlock import FolderLock

    run_dir = tmp_path / "runs" / "t"
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(_cfg(tmp_path, "tracking.backends=[stdout]"), run_dir / "config.yaml")
    (run_dir / "metrics.jsonl").write_text('{"step": 0, "val/loss": 1.0}\n')
    assert run_cli(["tracking", "import", str(run_dir)])[0] == 0
    lock = FolderLock(run_dir, "train").acquire()
    try:
        code, out, err = run_cli(["register", "--run", str(run_dir), "--metric", "val/loss"])
    finally:
        lock.release()
    assert code == 2 and f"{run_dir} is in use" in err, err
