"""A resumed search's MLflow parent run ends FINISHED with the new best. The best values were MLflow params, which
cannot change: a resume whose best trial changed got "Changing param values is not allowed", and since
`ParentRun.finish` sent metrics, params and tags in one batch, that rejection also skipped the artifacts and
`set_terminated`: the parent stayed RUNNING with the old best and stale artifacts. The best is now tags
`best.<key>` and the metric `best/<metric>` (at the step of the trial count), and each part of the summary is logged
on its own, so one that fails never keeps the others or the run's end from MLflow."""
from __future__ import annotations

from pathlib import Path

import mlflow

from mmlnb_dist.config import load_config
from mmlnb_dist.core.tracking.runs import ParentRun

METRIC = "val/balanced_accuracy"


def _tracking(tmp_path):
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[mlflow]",
                                   "tune.recipe=mmlnb_dist.tuning.smoke:run"])
    return cfg, f"sqlite:///{tmp_path / 'mlflow.db'}"


def _artifact_text(client, run_id, path, tmp_path):
    return Path(client.download_artifacts(run_id, path, str(tmp_path / "dl"))).read_text()


def test_a_rejected_part_skips_neither_the_artifacts_nor_the_runs_end(tmp_path, monkeypatch):
    cfg, uri = _tracking(tmp_path)
    parent = ParentRun.open(cfg.tracking, uri, tmp_path, "s-search", params={"tune.seed": 0})
    note = tmp_path / "note.txt"
    note.write_text("first")
    parent.finish(artifacts=[note])
    again = ParentRun.open(cfg.tracking, uri, tmp_path, "s-search", resume_id=parent.run_id)
    assert again.run_id == parent.run_id
    note.write_text("second")
    log_batch = mlflow.MlflowClient.log_batch

    def rejecting_metrics(self, run_id, metrics=(), **kwargs):
        if metrics:
            raise mlflow.exceptions.MlflowException("rejected")  # as MLflow rejected a changed param's batch
        return log_batch(self, run_id, metrics=metrics, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", rejecting_metrics)
    again.finish(metrics={"m": 2.0}, tags={"t": "new"}, artifacts=[note])
    monkeypatch.undo()
    client = mlflow.MlflowClient(uri)
    run = client.get_run(parent.run_id)
    assert run.info.status == "FINISHED"
    assert "m" not in run.data.metrics and run.data.tags["t"] == "new"
    assert _artifact_text(client, parent.run_id, "search/note.txt", tmp_path) == "second"


def _summary(tmp_path, best_trial, lr, value, trials):
    exp = tmp_path / "exp"
    exp.mkdir(exist_ok=True)
    (exp / "trials.csv").write_text(f"trial_id\n{best_trial}\n")
    (exp / "search.png").write_bytes(b"png")
    (exp / "best.yaml").write_text(f"train:\n  lr: {lr}\n")
    return {"wall_s": 1.0, "trials": trials, "errored": 0, "diverged": 0, "stopped_early": 0,
            "cache": {"cache_files": 0}, "figure": str(exp / "search.png"), "best_config": str(exp / "best.yaml"),
            "best_metric": value, "best_trial_id": best_trial, "best_params": {"train.lr": lr}}, {"exp": exp}


def test_a_resume_whose_best_changed_ends_the_parent_run_with_the_new_best(tmp_path):
    from mmlnb_dist.tuning.outcome import log_parent

    cfg, uri = _tracking(tmp_path)
    parent = ParentRun.open(cfg.tracking, uri, tmp_path, "s-search")
    summary, dirs = _summary(tmp_path, "aaa", 1e-4, 0.7, trials=2)
    log_parent(cfg, parent, summary, dirs, [{"trial_id": "bbb"}])  # bbb errored; the resume reruns it
    resumed = ParentRun.open(cfg.tracking, uri, tmp_path, "s-search", resume_id=parent.run_id)
    summary, dirs = _summary(tmp_path, "bbb", 5e-3, 0.9, trials=3)
    log_parent(cfg, resumed, summary, dirs, [])
    client = mlflow.MlflowClient(uri)
    run = client.get_run(parent.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["best_trial_id"] == "bbb" and run.data.tags["best.train.lr"] == "0.005", run.data.tags
    assert "errored_trials" not in run.data.tags
    assert run.data.metrics[f"best/{METRIC}"] == 0.9 and run.data.metrics["tune/trials"] == 3
    assert _artifact_text(client, parent.run_id, "search/best.yaml", tmp_path) == "train:\n  lr: 0.005\n"
    assert _artifact_text(client, parent.run_id, "search/trials.csv", tmp_path) == "trial_id\nbbb\n"
