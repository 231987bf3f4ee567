"""The MLflow fault drill: a fusion training run loses its tracking server after its first epoch, is SIGKILLed
after a later checkpoint, and is resumed once the server is back; then `tracking sync` runs over the runs folder.
Every metric the run logged must end up in ONE MLflow run, FINISHED.

The test and the training process talk through files only (no sleep decides anything): the training's `report`
hook marks each epoch and waits for the test where the test has to act.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.fusion import CPU_DEMO, make_shards

CHILD = """
import sys, time
from pathlib import Path
from mmlnb_dist.config import load_config
from mmlnb_dist.core.recipe import run
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

marks = Path(sys.argv[1])

def report(epoch, metrics):
    (marks / f"epoch-{epoch}").touch()
    if epoch == 0:  # the test stops the tracking server now
        while not (marks / "server-down").exists():
            time.sleep(0.05)
    if epoch == 2:  # epoch 1's checkpoint exists: hang here until the test SIGKILLs this process
        while True:
            time.sleep(1)

run(FusionRecipe, load_config(sys.argv[2], sys.argv[3:]), report=report)
"""


def _wait_for(path: Path, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 300
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}) before {what}:\n{proc.stderr.read()[-4000:]}")
        assert time.time() < deadline, f"no {what} after 300 s"
        time.sleep(0.05)


@pytest.mark.slow
def test_server_outage_then_sigkill_then_resume_keeps_every_metric_in_one_finished_run(tmp_path, capsys):
    import mlflow

    from mmlnb_dist.cli import main
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.core.tracking.server import start_server, stop_server
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    shards = make_shards(tmp_path, n=90, size=48)
    db, art = f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server-artifacts"
    server, uri = start_server(db, art, log_path=tmp_path / "server.log")
    port = int(uri.rsplit(":", 1)[1])
    runs, marks = tmp_path / "runs", tmp_path / "marks"
    marks.mkdir()
    overrides = [f"data.shards={shards}", f"run.output_dir={runs}", "run.name=drill",
                 "tracking.backends=[mlflow,stdout]",
                 f"tracking.uri={uri}", "tracking.log_environment=false", "data.loader.num_workers=0",
                 "data.loader.image_size=32", "train.epochs=4", "train.log_every=1", "train.checkpoint_every=1"]
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marks), str(CPU_DEMO), *overrides], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(marks / "epoch-0", child, "the first epoch")
        stop_server(server)  # the tracking server dies after the first logged epoch
        (marks / "server-down").touch()
        _wait_for(marks / "epoch-2", child, "epoch 2")
        assert (runs / "drill" / "checkpoints" / "epoch-0001").is_dir()
        child.send_signal(signal.SIGKILL)  # ... and the training is killed
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    journal = runs / "drill" / "tracking" / "train.jsonl"
    state = json.loads(journal.with_suffix(".json").read_text())
    unsent = len(journal.read_text().splitlines()) - state["acked"]
    assert unsent > 0  # what the dead process could not send

    server, _ = start_server(db, art, port=port, log_path=tmp_path / "server.log")  # the server is back
    try:
        result = run(FusionRecipe, load_config(CPU_DEMO, [*overrides, "run.resume=true"]))
        assert main(["tracking", "sync", str(runs)]) == 0
        assert "sent 0 event(s)" in capsys.readouterr().out  # the resumed run already sent the backlog

        client = mlflow.MlflowClient(uri)
        (only,) = client.search_runs([client.get_experiment_by_name("mmlnb-demo").experiment_id])
        assert only.info.run_id == state["run_id"] and only.info.status == "FINISHED"
        assert only.data.tags["resume_count"] == "1"
        # every epoch's validation metrics once (epoch 2 ran again after the kill: its first records stand, as
        # MLflow cannot delete a point) and the final evaluation
        epochs = [m.value for m in client.get_metric_history(only.info.run_id, "epoch")]
        assert sorted(epochs) == [0.0, 1.0, 2.0, 3.0]
        assert len(client.get_metric_history(only.info.run_id, "val/balanced_accuracy")) == len(epochs)
        assert only.data.metrics["best/val/balanced_accuracy"] == pytest.approx(result["val/balanced_accuracy"])
        # every optimizer step's train/loss, from both processes
        steps = sorted(m.step for m in client.get_metric_history(only.info.run_id, "train/loss"))
        assert steps[0] == 1 and steps == list(range(1, steps[-1] + 1)) and steps[-1] % 4 == 0
        # metrics.jsonl: one record per step too, the replayed ones this process's (a bit-identical resume)
        records = [json.loads(x) for x in (runs / "drill" / "metrics.jsonl").read_text().splitlines()]
        assert sorted(r["epoch"] for r in records if "epoch" in r) == [0.0, 1.0, 2.0, 3.0]
        assert sorted(r["step"] for r in records if "train/loss" in r) == steps
        stored = {m.step: m.value for m in client.get_metric_history(only.info.run_id, "train/loss")}
        assert {r["step"]: r["train/loss"] for r in records if "train/loss" in r} == stored
        # and everything journaled (metrics of both processes) is in the store
        events = [json.loads(x) for x in journal.read_text().splitlines()]
        for key in ("train/loss", "val/balanced_accuracy"):
            logged = {(e["step"], e["metrics"][key]) for e in events if e["op"] == "metrics" and key in e["metrics"]}
            stored = {(m.step, m.value) for m in client.get_metric_history(only.info.run_id, key)}
            assert logged == stored, key
    finally:
        stop_server(server)
