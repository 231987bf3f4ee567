"""`register --run FOLDER` of a run whose tracking server was lost mid-run: its journal still holds what the store
never received (the last metrics, the end of the run). It was refused as "RUNNING, not finished ... rerun its
command with run.resume=true" (retraining a finished run), and a run whose status had reached the store was
registered on its stale metrics. Now it names the journal and the command that sends it: `tracking sync`."""
from __future__ import annotations

import shlex

from mmlnb_dist.cli import main
from mmlnb_dist.core.sections import TrackingConfig
from mmlnb_dist.core.tracking import mlflow_logger


def test_register_names_tracking_sync_for_a_run_whose_journal_was_not_all_sent(tmp_path, monkeypatch, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = tmp_path / "runs" / "lost"
    logger = mlflow_logger.MLflowLogger(TrackingConfig(uri=uri), uri, tmp_path / "mlartifacts", "lost-train",
                                        tags={"run_dir": str(run_dir)}, run_dir=run_dir, stage="train")
    logger.log_metrics({"val/balanced_accuracy": 0.4}, 1)

    def server_lost(*args, **kwargs):
        raise ConnectionError("tracking server lost")

    monkeypatch.setattr(mlflow_logger, "apply_event", server_lost)
    logger.log_metrics({"val/balanced_accuracy": 0.8}, 2)
    logger.log_metrics({"best/val/balanced_accuracy": 0.8}, 2)
    logger.close()
    monkeypatch.undo()
    capsys.readouterr()

    assert main(["register", "--run", str(run_dir), "--name", "lost"]) == 2
    err = capsys.readouterr().err
    assert f"mmlnb-dist tracking sync {shlex.quote(str(run_dir))}" in err, err
    assert "run.resume=true" not in err

    assert main(["tracking", "sync", str(run_dir)]) == 0  # then the run is whole in its store, FINISHED
    capsys.readouterr()
    main(["register", "--run", str(run_dir), "--name", "lost"])  # (no export here: refused for that, not the journal)
    assert "tracking sync" not in capsys.readouterr().err
