"""MLflow continuity across outages and restarts: a resumed run continues its MLflow run, the journal marks only
what the server acknowledged, `tracking sync` walks a runs folder, and killed runs end KILLED, never RUNNING."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmlnb_dist.cli import main
from mmlnb_dist.config import load_config
from mmlnb_dist.core.tracking import build_logger

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"


def _cfg(tmp_path: Path, *extra: str):
    """The embedded default store (`<runs>/mlflow.db`, SQLite), MLflow only, run name `t`."""
    return load_config(CPU_DEMO, [f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[mlflow]",
                                  "tracking.log_environment=false", "run.name=t", *extra])


def _logger(cfg, run_dir: Path, stage: str = "train"):
    return build_logger(cfg.tracking, cfg.run, 0, run_dir, stage, config=cfg)


def _client(tmp_path: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}")


def _steps(client, run_id: str, key: str = "train/loss"):
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def _offline(monkeypatch):
    """The tracking server is down for the loggers created from now on."""
    from mmlnb_dist.core.tracking import mlflow_logger

    monkeypatch.setattr(mlflow_logger, "server_reachable", lambda *a, **k: False)


@pytest.mark.parametrize("spool", ["true", "false"])
def test_resumed_run_continues_the_same_mlflow_run_and_a_fresh_run_never_does(tmp_path, spool):
    """With or without the journal: without it (`tracking.spool=false`) each resumed process used to open a new
    MLflow run, so one training's epochs were split over several runs and the folder named only the last."""
    run_dir = tmp_path / "runs" / "t"
    first = _logger(_cfg(tmp_path, f"tracking.spool={spool}"), run_dir)
    first.log_metrics({"train/loss": 1.0}, step=0)
    first.log_metrics({"train/loss": 0.9}, step=1)
    first.close("KILLED")
    resumed = _logger(_cfg(tmp_path, "run.resume=true", f"tracking.spool={spool}"), run_dir)
    assert resumed.run_id == first.run_id
    assert json.loads((run_dir / "tracking" / "train.json").read_text())["run_id"] == first.run_id
    resumed.log_metrics({"train/loss": 0.8}, step=2)
    resumed.close()
    client = _client(tmp_path)
    assert _steps(client, first.run_id) == [0, 1, 2]
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["resume_count"] == "1"
    assert "run.resume" not in run.data.params  # how a process started is not a param of the run

    fresh = _logger(_cfg(tmp_path, f"tracking.spool={spool}"), run_dir)
    assert fresh.run_id not in (None, first.run_id)
    fresh.close()
    assert _steps(client, fresh.run_id) == [] and _steps(client, first.run_id) == [0, 1, 2]
    if spool == "true":
        assert main(["tracking", "sync", str(run_dir)]) == 0  # the old journal, moved aside, holds nothing unsent


def test_resume_sends_what_the_lost_server_never_acknowledged(tmp_path, monkeypatch, capsys):
    from mmlnb_dist.core.tracking import mlflow_logger

    run_dir = tmp_path / "runs" / "t"
    first = _logger(_cfg(tmp_path), run_dir)
    first.log_metrics({"train/loss": 1.0}, step=0)

    def server_gone(*args, **kwargs):
        raise ConnectionError("connection refused")

    monkeypatch.setattr(mlflow_logger, "apply_event", server_gone)  # the server dies mid-run
    first.log_metrics({"train/loss": 0.9}, step=1)
    first.log_metrics({"train/loss": 0.8}, step=2)
    first.close("KILLED")
    monkeypatch.undo()  # ... and is back when the run resumes
    resumed = _logger(_cfg(tmp_path, "run.resume=true"), run_dir)
    resumed.log_metrics({"train/loss": 0.7}, step=3)
    resumed.close()
    client = _client(tmp_path)
    assert _steps(client, resumed.run_id) == [0, 1, 2, 3]
    assert client.get_run(resumed.run_id).info.status == "FINISHED"
    capsys.readouterr()
    assert main(["tracking", "sync", str(run_dir)]) == 0
    assert "sent 0 event(s)" in capsys.readouterr().out


def test_sync_failing_halfway_leaves_the_rest_pending(tmp_path, monkeypatch, capsys):
    import mlflow

    run_dir = tmp_path / "runs" / "t"
    _offline(monkeypatch)
    lg = _logger(_cfg(tmp_path), run_dir)
    for step in range(5):
        lg.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
        if step == 1:
            lg.set_tags({"phase": "2"})
    lg.close()
    monkeypatch.undo()
    real = mlflow.MlflowClient.log_batch

    def refuses_step_3(self, run_id, metrics=(), *args, **kwargs):
        if any(m.step == 3 for m in metrics or ()):
            raise ConnectionError("the server went away")
        return real(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", refuses_step_3)
    assert main(["tracking", "sync", str(tmp_path / "runs")]) == 1
    assert "the server went away" in capsys.readouterr().err
    state = json.loads((run_dir / "tracking" / "train.json").read_text())
    events = [json.loads(x) for x in (run_dir / "tracking" / "train.jsonl").read_text().splitlines()]
    # acknowledged: up to the request that failed (steps 2-4 went as one batch), not one event further
    assert events[state["acked"]].get("step") == 2
    client = _client(tmp_path)
    assert _steps(client, state["run_id"]) == [0, 1] and client.get_run(state["run_id"]).data.tags["phase"] == "2"
    monkeypatch.undo()
    assert main(["tracking", "sync", str(tmp_path / "runs")]) == 0
    assert [m.step for m in client.get_metric_history(state["run_id"], "train/loss")] == [0, 1, 2, 3, 4]
    assert client.get_run(state["run_id"]).info.status == "FINISHED"


def test_sync_uploads_every_pending_run_under_a_runs_folder(tmp_path, monkeypatch, capsys):
    _offline(monkeypatch)
    for name, stage in (("a", "train"), ("b", "train"), ("a-evaluate", "evaluate")):
        lg = _logger(_cfg(tmp_path, f"run.name={name.split('-')[0]}"), tmp_path / "runs" / name, stage)
        lg.log_metrics({"val/accuracy": 0.5}, step=0)
        lg.close("FAILED" if name == "b" else "FINISHED")
    monkeypatch.undo()
    assert main(["tracking", "sync", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out.count("created run") == 3
    client = _client(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("mmlnb-demo").experiment_id])
    got = {r.info.run_name: (r.data.metrics.get("val/accuracy"), r.info.status) for r in runs}
    assert got == {"a-train": (0.5, "FINISHED"), "b-train": (0.5, "FAILED"), "a-evaluate": (0.5, "FINISHED")}


def test_close_status_reaches_the_server(tmp_path):
    lg = _logger(_cfg(tmp_path), tmp_path / "runs" / "t")
    lg.close("KILLED")
    assert _client(tmp_path).get_run(lg.run_id).info.status == "KILLED"


CHILD = """
import signal, sys
from pathlib import Path
from mmlnb_dist.config import load_config
from mmlnb_dist.core.recipe import run
from mmlnb_dist.core.signals import sigterm_as_interrupt
from mmlnb_dist.core.tracking import build_logger

class Waits:
    '''A recipe that logs one metric, says so in a file, then waits for a signal.'''
    name = "waits"
    def __init__(self, cfg, env, report=None):
        self.cfg, self.logger = cfg, None
    def setup(self):
        self.logger = build_logger(self.cfg.tracking, self.cfg.run, 0, self.cfg.run.dir, "train")
    def train(self):
        self.logger.log_metrics({"train/loss": 1.0}, step=0)
        (self.cfg.run.dir / "ready").write_text(self.logger.run_id)
        while True:
            signal.pause()
    def cleanup(self, status):
        self.logger.close(status)

cfg = load_config(sys.argv[1], sys.argv[2:])
with sigterm_as_interrupt():
    run(Waits, cfg)
"""


def _start_waiting_run(tmp_path: Path) -> subprocess.Popen:
    args = [f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[mlflow]", "tracking.log_environment=false",
            "run.name=t", "data.loader.num_workers=0"]
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(CPU_DEMO), *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ready = tmp_path / "runs" / "t" / "ready"
    deadline = time.time() + 240
    while not ready.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert ready.exists(), proc.stderr.read()[-3000:] if proc.poll() is not None else "no ready file"
    return proc


@pytest.mark.slow
def test_sigterm_ends_the_run_as_killed(tmp_path):
    proc = _start_waiting_run(tmp_path)
    run_id = (tmp_path / "runs" / "t" / "ready").read_text()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert _client(tmp_path).get_run(run_id).info.status == "KILLED"


@pytest.mark.slow
def test_sigkilled_run_is_closed_as_killed_by_sync_and_continued_by_resume(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "t"
    proc = _start_waiting_run(tmp_path)
    run_id = (run_dir / "ready").read_text()
    assert main(["tracking", "sync", str(tmp_path / "runs")]) == 0  # a live writer's journal is left alone
    assert "skipped (a live process is still writing it)" in capsys.readouterr().out
    proc.kill()
    proc.wait()
    client = _client(tmp_path)
    assert client.get_run(run_id).info.status == "RUNNING"  # nobody told the server
    assert main(["tracking", "sync", str(tmp_path / "runs")]) == 0
    assert client.get_run(run_id).info.status == "KILLED"

    resumed = _logger(_cfg(tmp_path, "run.resume=true"), run_dir)
    assert resumed.run_id == run_id and client.get_run(run_id).info.status == "RUNNING"
    resumed.log_metrics({"train/loss": 0.5}, step=1)
    resumed.close()
    assert _steps(client, run_id) == [0, 1] and client.get_run(run_id).info.status == "FINISHED"


def test_a_resume_closes_the_segment_of_a_process_that_died_silently(tmp_path):
    run_dir = tmp_path / "runs" / "t"
    first = _logger(_cfg(tmp_path), run_dir)
    first.log_metrics({"train/loss": 1.0}, step=0)
    first.loggers[0].spool.unlock()  # the process dies: no close, and the kernel drops its lock
    resumed = _logger(_cfg(tmp_path, "run.resume=true"), run_dir)
    resumed.close()
    events = [json.loads(x) for x in (run_dir / "tracking" / "train.jsonl").read_text().splitlines()]
    assert [(e["op"], e.get("status")) for e in events if e["op"] in ("start", "resume", "close")] == [
        ("start", None), ("close", "KILLED"), ("resume", None), ("close", "FINISHED")]
    assert _client(tmp_path).get_run(first.run_id).info.status == "FINISHED"


def test_a_fresh_start_over_a_killed_run_ends_that_run_as_killed(tmp_path):
    """A process killed before its first checkpoint (a Tune trial when its search's driver was killed) restarts
    fresh in the same folder: a new MLflow run, and the killed one's journal is set aside. That killed run used to
    stay RUNNING on the server for good, a second child run of the search beside the new one."""
    run_dir = tmp_path / "runs" / "t"
    first = _logger(_cfg(tmp_path), run_dir)
    first.log_metrics({"train/loss": 1.0}, step=0)
    first.loggers[0].spool.unlock()  # the process dies: no close, and the kernel drops its lock
    fresh = _logger(_cfg(tmp_path), run_dir)
    fresh.close()
    client = _client(tmp_path)
    assert fresh.run_id != first.run_id
    assert client.get_run(first.run_id).info.status == "KILLED"
    assert client.get_run(fresh.run_id).info.status == "FINISHED"
    archived = [json.loads(x) for x in (run_dir / "tracking" / "train.1.jsonl").read_text().splitlines()]
    assert [(e["op"], e.get("status")) for e in archived if e["op"] in ("start", "close")] == [
        ("start", None), ("close", "KILLED")]


def test_a_process_killed_between_creating_its_run_and_recording_it_leaves_one_run(tmp_path, monkeypatch):
    """The window the two-node search drill hit once in CI: a trial's process created its MLflow run and was
    killed before its journal recorded the run id. The next upload of that journal (the fresh restart closing it as
    KILLED) created a second run, and the first stayed RUNNING for good. The run carries its journal's start
    digest, so the upload finds it: one run, ended KILLED."""
    from mmlnb_dist.core.tracking import journal

    run_dir = tmp_path / "runs" / "t"
    real_write_state = journal.Spool.write_state
    killed = []

    def killed_before_recording(self, **fields):
        if "run_id" in fields and not killed:
            killed.append(fields["run_id"])
            raise KeyboardInterrupt  # stands in for the SIGKILL: nothing after create_run happens
        return real_write_state(self, **fields)

    monkeypatch.setattr(journal.Spool, "write_state", killed_before_recording)
    with pytest.raises(KeyboardInterrupt):
        _logger(_cfg(tmp_path), run_dir)
    monkeypatch.setattr(journal.Spool, "write_state", real_write_state)
    journal.Spool.for_stage(run_dir, "train").unlock()  # the kernel drops a dead process's lock
    fresh = _logger(_cfg(tmp_path), run_dir)
    fresh.close()
    client = _client(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("mmlnb-demo").experiment_id])
    statuses = sorted((r.info.run_id == killed[0], r.info.status) for r in runs)
    assert statuses == [(False, "FINISHED"), (True, "KILLED")], statuses
