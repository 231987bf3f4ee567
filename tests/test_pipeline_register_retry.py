"""The pipeline's register stage after a tracking-server outage: the training ran offline (its MLflow calls
journaled), so the run has no MLflow run yet. The stage says why it could not register and stays open; the same
command, rerun with the server back, skips training and evaluation, sends the run's journal and registers it.
It used to record itself done with "tracking.backends has no mlflow" (untrue), so no rerun ever registered."""
from __future__ import annotations

import json

import pytest

from support.clip import caption_shards, clip_config


@pytest.mark.slow
def test_a_pipeline_trained_while_the_server_was_down_registers_when_rerun_with_it_up(tmp_path):
    import mlflow

    from mmlnb_dist.core.tracking.server import free_port, start_server, stop_server
    from mmlnb_dist.pipeline.flow import PipelineInputs, run_pipeline

    shards = caption_shards(tmp_path, n=48, size=32, test_fraction=0.25)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cfg = clip_config(shards, tmp_path / "runs", "train.epochs=1", "tracking.backends=[mlflow]",
                      f"tracking.uri={uri}", "tracking.log_environment=false", "tracking.register_name=clip-nb",
                      name="outage")
    first = run_pipeline(cfg, PipelineInputs())  # no server at `uri`: training runs and journals
    reason = first.registration["reason"]
    assert first.registration["registered"] is False
    assert uri in reason and "rerun the same command" in reason and "backends" not in reason, reason
    assert f"not registered: {reason}" in first.report

    server, _ = start_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts", port=port,
                             log_path=tmp_path / "server.log")
    try:
        again = run_pipeline(cfg, PipelineInputs())
        assert again.stage("train").skipped and again.stage("evaluate").skipped
        reg = again.registration
        assert reg["registered"] is True, reg
        client = mlflow.MlflowClient(uri, registry_uri=uri)
        version = client.get_model_version("clip-nb", reg["version"])
        run_dir = tmp_path / "runs" / "outage-clip"
        journal_run = json.loads((run_dir / "tracking" / "train.json").read_text())["run_id"]
        assert version.run_id == journal_run
        run = client.get_run(journal_run)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["val/micro_f1"] == pytest.approx(again.stage("train").info["metrics"]["val/micro_f1"])
        third = run_pipeline(cfg, PipelineInputs())  # now done: nothing runs, nothing registers twice
        assert third.stage("register").skipped
        assert len(client.search_model_versions("name='clip-nb'")) == 1
    finally:
        stop_server(server)


@pytest.mark.slow
def test_a_pipeline_trained_without_mlflow_registers_when_rerun_with_it(tmp_path):
    """A pipeline run with `tracking.backends=[stdout]` (no tracking server where it trained) could never register:
    rerun with mlflow, training was up to date (tracking is not in its fingerprint), so no MLflow run was ever
    made, and the register stage was done for good. Now it stays open, and the rerun makes the training run's
    MLflow run from the metrics the run folder kept (`tracking import`), then registers it, training skipped."""
    import mlflow

    from mmlnb_dist.pipeline.flow import PipelineInputs, run_pipeline

    shards = caption_shards(tmp_path, n=48, size=32, test_fraction=0.25)
    args = ("train.epochs=2", "tracking.log_environment=false", "tracking.register_name=clip-later")
    first = run_pipeline(clip_config(shards, tmp_path / "runs", *args, "tracking.backends=[stdout]", name="later"),
                         PipelineInputs())
    assert first.registration["registered"] is False and "tracking.backends has no mlflow" in \
        first.registration["reason"]
    run_dir = tmp_path / "runs" / "later-clip"
    assert not (run_dir / "tracking").exists()

    again = run_pipeline(clip_config(shards, tmp_path / "runs", *args, "tracking.backends=[stdout,mlflow]",
                                     name="later"), PipelineInputs())
    assert again.stage("train").skipped and again.stage("evaluate").skipped
    reg = again.registration
    assert reg["registered"] is True, reg
    uri = f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    run_id = json.loads((run_dir / "tracking" / "train.json").read_text())["run_id"]
    assert client.get_model_version("clip-later", reg["version"]).run_id == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["imported_from"] == "metrics.jsonl"
    trained = again.stage("train").info["metrics"]
    assert run.data.metrics["val/micro_f1"] == pytest.approx(trained["val/micro_f1"])
    assert run.data.params["train.epochs"] == "2" and "run.resume" not in run.data.params
    steps = [m.step for m in client.get_metric_history(run_id, "val/micro_f1")]
    assert len(steps) == 2 and steps == sorted(steps)  # one value per epoch, at its step
