"""A run folder copied to branch a run (`cp -r runs/a runs/a2`, then `run.name=a2 run.resume=true` with more
epochs) resumed in the copy's journal the MLflow run of the original: the branch's metrics went into run a's MLflow
run, which `register --run runs/a` then read as a's. The copy now continues in a run of its own, holding the
history it copied up to the branch."""
from __future__ import annotations

import json
import shutil

from mmlnb_dist.core.sections import TrackingConfig
from mmlnb_dist.core.tracking.mlflow_logger import MLflowLogger


def _logger(root, name, resume, spool=True):
    uri = f"sqlite:///{root / 'mlflow.db'}"
    run_dir = root / name
    return MLflowLogger(TrackingConfig(uri=uri, spool=spool), uri, root / "mlartifacts", f"{name}-train",
                        tags={"run_dir": str(run_dir.resolve())}, run_dir=run_dir, stage="train", resume=resume)


def _history(root, name):
    import mlflow

    record = json.loads((root / name / "tracking" / "train.json").read_text())
    client = mlflow.MlflowClient(record["tracking_uri"])
    return record["run_id"], sorted((m.step, m.value) for m in client.get_metric_history(record["run_id"], "val/acc"))


def _branch(tmp_path, spool):
    first = _logger(tmp_path, "a", resume=False, spool=spool)
    first.log_metrics({"val/acc": 0.5}, 1)
    first.log_metrics({"val/acc": 0.6}, 2)
    first.close()
    shutil.copytree(tmp_path / "a", tmp_path / "a2")
    branch = _logger(tmp_path, "a2", resume=True, spool=spool)
    branch.resumed_at(1)  # from the checkpoint of step 1, with more epochs
    branch.log_metrics({"val/acc": 0.9}, 3)
    branch.close()
    return _history(tmp_path, "a"), _history(tmp_path, "a2")


def test_a_copied_run_folder_resumes_into_a_run_of_its_own(tmp_path):
    (run_a, history_a), (run_a2, history_a2) = _branch(tmp_path, spool=True)
    assert history_a == [(1, 0.5), (2, 0.6)]
    assert run_a2 != run_a
    assert history_a2 == [(1, 0.5), (2, 0.6), (3, 0.9)]  # the history it branched from, then its own


def test_a_copied_run_folder_without_a_journal_resumes_into_a_run_of_its_own(tmp_path):
    (run_a, history_a), (run_a2, history_a2) = _branch(tmp_path, spool=False)
    assert history_a == [(1, 0.5), (2, 0.6)]
    assert run_a2 != run_a and history_a2 == [(3, 0.9)]  # nothing to replay without a journal
