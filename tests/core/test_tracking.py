"""Tracking: the MLflow logger against the local SQLite store and a real server, the offline journal and
`tracking sync`, evaluation figures, and the new CLI commands."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.config import load_config
from mmlnb_dist.core.logging import setup_logging
from mmlnb_dist.core.tracking import build_logger
from mmlnb_dist.data.shardset import ShardSet

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"


def _fake_shards(root: Path) -> Path:
    """Only the manifest matters for the dataset input."""
    shards = root / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    manifest = {"format": "mmlnb-shards/1", "classes": ["UD", "PD", "D"], "has_descriptions": True,
                "provenance": {"describe": {"model": "tiny", "adapter": "a1"}},
                "splits": {"train": {"num_samples": 9, "class_counts": {"UD": 3, "PD": 3, "D": 3},
                                     "shards": [{"file": "train-000000.tar", "num_samples": 9}]},
                           "val": {"num_samples": 3, "class_counts": {"UD": 1, "PD": 1, "D": 1},
                                   "shards": [{"file": "val-000000.tar", "num_samples": 3}]}}}
    (shards / "manifest.json").write_text(json.dumps(manifest))
    return shards


def _logger(cfg, rank, run_dir, stage="train"):
    """The logger a recipe builds: the resolved config as params, the shard set's manifest as dataset inputs."""
    return build_logger(cfg.tracking, cfg.run, rank, run_dir, stage, config=cfg,
                        datasets=ShardSet.open(cfg.data.shards).dataset_specs())


def _cfg(tmp_path: Path, uri=None, extra=()):
    overrides = [f"run.output_dir={tmp_path / 'runs'}", f"data.shards={_fake_shards(tmp_path)}",
                 "tracking.backends=[stdout,mlflow]", "run.name=t"]
    if uri:
        overrides.append(f"tracking.uri={uri}")
    return load_config(CPU_DEMO, overrides + list(extra))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from mmlnb_dist.core.tracking.server import start_server, stop_server

    root = tmp_path_factory.mktemp("server")
    proc, uri = start_server(f"sqlite:///{root / 'server.db'}", root / "artifacts", log_path=root / "server.log")
    yield {"uri": uri, "proc": proc, "root": root}
    stop_server(proc)


def _check_run_landed(uri: str, run_id: str):
    import mlflow

    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.params["train.epochs"] == "9"
    assert run.data.params["fusion.model.mode"] == "prmf"
    assert [m.value for m in client.get_metric_history(run_id, "val/accuracy")] == [0.5, 0.75]
    tags = run.data.tags
    assert tags["stage"] == "train" and "version.torch" in tags and "version.mlflow" in tags
    assert tags["device"].startswith(("cpu", "cuda")) and tags.get("git.commit")
    inputs = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
              for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "val"}
    profile = json.loads(inputs["train"].profile)
    assert profile["num_samples"] == 9 and profile["class_counts"]["UD"] == 3
    assert profile["provenance"]["describe"]["adapter"] == "a1"
    assert inputs["train"].digest == inputs["val"].digest  # one manifest, one digest
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert "config.yaml" in artifacts and "figures" in artifacts
    assert run.info.status == "FINISHED"
    return run


def _log_a_run(cfg, run_dir):
    import matplotlib.pyplot as plt

    logger = _logger(cfg, 0, run_dir)
    logger.log_metrics({"val/accuracy": 0.5}, step=1)
    logger.log_metrics({"val/accuracy": 0.75}, step=2)
    fig = plt.figure()
    logger.log_figure(fig, "probe.png")
    plt.close(fig)
    logger.close()
    return logger


def test_local_sqlite_store_gets_params_metrics_dataset_and_artifacts(tmp_path):
    cfg = _cfg(tmp_path)
    logger = _log_a_run(cfg, tmp_path / "runs" / "t")
    assert (tmp_path / "runs" / "mlflow.db").is_file()  # the embedded default, created on first use
    _check_run_landed(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}", logger.run_id)


def test_nonzero_ranks_log_nothing(tmp_path):
    from mmlnb_dist.core.tracking.loggers import NullLogger

    assert isinstance(_logger(_cfg(tmp_path), 1, tmp_path / "r"), NullLogger)
    assert not (tmp_path / "runs" / "mlflow.db").exists()


def test_tracking_server_gets_params_metrics_dataset_and_artifacts(tmp_path, server):
    logger = _log_a_run(_cfg(tmp_path, server["uri"]), tmp_path / "runs" / "t")
    _check_run_landed(server["uri"], logger.run_id)


@pytest.mark.slow  # stops and restarts a real MLflow server process
def test_lost_server_does_not_stop_training_and_sync_uploads_later(tmp_path, capsys):
    import mlflow

    from mmlnb_dist.core.tracking.server import start_server, stop_server

    setup_logging(0)  # as the CLI and core.recipe.run do: warnings print as `WARNING [component] ...` on stderr
    db = f"sqlite:///{tmp_path / 'lost.db'}"
    proc, uri = start_server(db, tmp_path / "art")
    port = int(uri.rsplit(":", 1)[1])
    cfg = _cfg(tmp_path, uri)
    run_dir = tmp_path / "runs" / "t"
    logger = _logger(cfg, 0, run_dir)
    logger.log_metrics({"train/loss": 1.0}, step=0)
    stop_server(proc)  # the server goes away mid-run
    t0 = time.time()
    for step in range(1, 6):  # training keeps going, and quickly
        logger.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    logger.close()
    assert time.time() - t0 < 30
    err = capsys.readouterr().err
    assert err.count("MLflow tracking disabled") == 1  # warned once
    assert "tracking sync" in err
    spool = [json.loads(x) for x in (run_dir / "tracking" / "train.jsonl").read_text().splitlines()]
    assert [e["step"] for e in spool if e["op"] == "metrics"] == [0, 1, 2, 3, 4, 5]

    proc, uri = start_server(db, tmp_path / "art", port=port)  # the server is back
    try:
        assert main(["tracking", "sync", str(run_dir)]) == 0
        client = mlflow.MlflowClient(uri)
        hist = client.get_metric_history(logger.run_id, "train/loss")
        assert sorted(m.step for m in hist) == [0, 1, 2, 3, 4, 5]  # the same run, now complete
        assert client.get_run(logger.run_id).info.status == "FINISHED"
        assert main(["tracking", "sync", str(run_dir)]) == 0  # idempotent: nothing is sent twice
        assert len(client.get_metric_history(logger.run_id, "train/loss")) == 6
        assert "sent 0 event(s)" in capsys.readouterr().out
    finally:
        stop_server(proc)


def test_unreachable_server_at_start_is_journaled_and_synced_into_a_new_run(tmp_path, server, capsys):
    import mlflow

    from mmlnb_dist.core.tracking.server import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    run_dir = tmp_path / "runs" / "t"
    t0 = time.time()
    logger = _logger(_cfg(tmp_path, dead), 0, run_dir)
    logger.log_metrics({"val/accuracy": 0.5}, step=1)
    logger.close()
    assert time.time() - t0 < 20 and logger.run_id is None
    assert main(["tracking", "sync", str(run_dir), "--uri", server["uri"]]) == 0
    state = json.loads((run_dir / "tracking" / "train.json").read_text())
    run = mlflow.MlflowClient(server["uri"]).get_run(state["run_id"])
    assert run.data.metrics["val/accuracy"] == 0.5 and run.data.params["train.epochs"] == "9"


def test_sync_without_journal_is_a_clear_error(tmp_path, capsys):
    assert main(["tracking", "sync", str(tmp_path)]) == 2
    assert "no MLflow journal" in capsys.readouterr().err


def test_evaluation_figures_are_drawn_and_logged(tmp_path):
    from mmlnb_dist.core.tracking.loggers import StdoutLogger
    from mmlnb_dist.core.tracking.mlflow_logger import MLflowLogger
    from mmlnb_dist.recipes.fusion.plots import log_evaluation_figures

    class Collect(StdoutLogger):
        def __init__(self):
            super().__init__(None)
            self.names = []

        def log_figure(self, figure, name):
            figure.savefig(tmp_path / name.replace("/", "_"))
            self.names.append(name)

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    probs = rng.dirichlet([1, 1, 1], 60)
    cur = {"epochs": list(range(9)), "lambdas": [0.3, 0.3, 0.3, 0.5, 0.7, 0.9, 1, 1, 1],
           "phases": [{"start_epoch": 0, "train_image_encoder": True, "train_text_encoder": False},
                      {"start_epoch": 3, "train_image_encoder": True, "train_text_encoder": True}]}
    lg = Collect()
    log_evaluation_figures(lg, y, probs, ["UD", "PD", "D"], alpha=rng.random(60), curriculum=cur)
    assert set(lg.names) == {"val/confusion_matrix.png", "val/confusion_matrix_normalized.png",
                             "val/roc_curves.png", "val/alpha_distribution.png", "curriculum_schedule.png"}
    assert all((tmp_path / n.replace("/", "_")).stat().st_size > 1000 for n in lg.names)

    # The MLflow backend keeps every figure under <run_dir>/figures, even with no server, and journals it as an
    # artifact of the same sub-folder (what `tracking sync` uploads later).
    from mmlnb_dist.core.sections import TrackingConfig
    from mmlnb_dist.core.tracking.server import free_port

    run_dir = tmp_path / "run"
    ml = MLflowLogger(TrackingConfig(), f"http://127.0.0.1:{free_port()}", tmp_path / "art", "fig-train",
                      run_dir=run_dir, stage="train")
    log_evaluation_figures(ml, y, probs, ["UD", "PD", "D"], alpha=rng.random(60), curriculum=cur)
    ml.close()
    saved = {str(p.relative_to(run_dir / "figures")) for p in (run_dir / "figures").rglob("*.png")}
    assert saved == set(lg.names)
    assert all((run_dir / "figures" / n).stat().st_size > 1000 for n in saved)
    journaled = [json.loads(x) for x in (run_dir / "tracking" / "train.jsonl").read_text().splitlines()]
    artifacts = {(Path(e["path"]).relative_to((run_dir / "figures").resolve()).as_posix(), e["artifact_path"])
                 for e in journaled if e["op"] == "artifact"}
    assert artifacts == {(n, str(Path("figures", n).parent)) for n in saved}


def test_new_commands_have_help(capsys):
    for argv in (["mlflow-server", "--help"], ["tracking", "sync", "--help"], ["register", "--help"],
                 ["predict", "--help"], ["tune", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
    assert "127.0.0.1" in capsys.readouterr().out
