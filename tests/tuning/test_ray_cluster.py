"""Ray at cluster size (issue 14, item 2): a two-node Ray cluster on this machine (`ray.cluster_utils.Cluster`),
one real `mmlnb-dist mlflow-server`, and the commands that join the cluster by address.

- `tune --ray-address ADDR` runs a 3-trial grid with 2 trials at a time, each trial a 2-worker DeepSpeed group
  spread over both nodes, logging to the server; the driver is SIGKILLed when the first trial has finished and
  the search is resumed with `tune --ray-address auto tune.resume=true`: 3 trials finish, the finished one is not
  run again, the server holds one parent run with one finished child per trial (and a KILLED one for an attempt
  the kill caught before its first checkpoint, never a RUNNING one), and no log mentions a SQLite lock.
- `slides tile --ray-address ADDR` on `slides synth` slides writes the same shards as a local run.

The cluster lives in a private RAY_TMPDIR (its sockets, logs and the `ray_current_cluster` file that `auto`
reads), so it neither joins nor disturbs any other Ray instance on the machine; a finalizer shuts it down and
kills, by pid, whatever process still names that folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from support.fusion import make_shards

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"
LAUNCHER_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "RAY_ADDRESS")
LOCK_ERRORS = ("database is locked", "sqlite3.OperationalError")
GUARD_S = 900  # a guard against a hang, never the moment to kill: files decide that


def _processes_naming(text: str):
    """Live pids whose command line or environment contains `text` (this module's RAY_TMPDIR reaches every
    process of its cluster: raylets, GCS, workers that renamed themselves `ray::...`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (text in cmd or text in environ) and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes of 3 logical CPUs each: room for two trials of (1 trial process + 2 workers)."""
    from ray.cluster_utils import Cluster

    ray_tmp = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # short: Ray's socket paths stay < 107 chars
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_TMPDIR", str(ray_tmp))
    # Cluster() starts its nodes without token auth, but a driver joining by `auto` turns auth on when a token
    # exists on the machine (~/.ray/auth_token, written by any earlier local ray.init): the GCS then cannot call
    # the driver back and cancels every trial actor ("cancelled before it started running"). Nodes and drivers
    # inherit this variable, so all of them agree.
    patch.setenv("RAY_AUTH_MODE", "disabled")
    for key in LAUNCHER_VARS:
        patch.delenv(key, raising=False)
    nodes = None
    try:
        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "include_dashboard": False})
        nodes.add_node(num_cpus=3)
        yield SimpleNamespace(address=nodes.address, ray_tmp=ray_tmp)
    finally:
        if nodes is not None:
            nodes.shutdown()
        for pid in _processes_naming(str(ray_tmp)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        patch.undo()
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """A real `mmlnb-dist mlflow-server` on a free port of 127.0.0.1 (SQLite behind it: one writer)."""
    from mmlnb_dist.core.tracking.server import free_port, server_reachable, stop_server

    root = tmp_path_factory.mktemp("server")
    port = free_port()
    log = root / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mmlnb_dist.cli", "mlflow-server", "--port", str(port),
                                 "--backend-store", f"sqlite:///{root / 'mlflow.db'}",
                                 "--artifacts-dir", str(root / "artifacts")],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not server_reachable(uri, 1.0):
            assert proc.poll() is None, f"mlflow-server exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"mlflow-server never answered:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield SimpleNamespace(uri=uri, log=log)
    finally:
        stop_server(proc)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("cluster-data"), n=90, size=48)


def _tune_cmd(shards: Path, out: Path, uri: str, address: str, *extra: str):
    return [sys.executable, "-m", "mmlnb_dist.cli", "tune", "--config", str(CPU_DEMO),
            "--space", str(out / "space.yaml"), "--ray-address", address,
            f"data.shards={shards}", f"run.output_dir={out / 'runs'}", "tracking.backends=[mlflow]",
            f"tracking.uri={uri}", "data.loader.num_workers=0", "data.loader.image_size=32", "data.loader.augment=false",
            "train.epochs=2",
            "tune.metric=val/loss", "tune.mode=min", "tune.searcher=grid", "tune.num_samples=1",
            "tune.scheduler=fifo", "tune.max_concurrent=2", "tune.workers_per_trial=2", "tune.cpus_per_trial=1",
            "tune.placement_strategy=SPREAD", "tune.name=cluster", *extra]


def _trial_dirs(trials: Path):
    return sorted(d for d in trials.iterdir() if d.is_dir() and ".lost-" not in d.name) if trials.is_dir() else []


@pytest.mark.slow
def test_two_node_search_with_tracking_server_survives_a_driver_kill(cluster, tracking_server, shards, tmp_path):
    import mlflow

    from mmlnb_dist.tuning.trial import RESULT_FILE, WORKER_FILE

    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {grid: [3.0e-3, 1.0e-3, 3.0e-4]}\n")
    trials = tmp_path / "runs" / "tune" / "cluster" / "trials"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # RAY_TMPDIR: the cluster's, which `auto` finds
    first_log = tmp_path / "first.log"
    with open(first_log, "wb") as out:
        driver = subprocess.Popen(_tune_cmd(shards, tmp_path, tracking_server.uri, cluster.address), cwd=ROOT,
                                  env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + GUARD_S
        while driver.poll() is None and not any((d / RESULT_FILE).is_file() for d in _trial_dirs(trials)):
            assert time.monotonic() < deadline, first_log.read_text()[-4000:]
            time.sleep(0.2)  # polling the trial folders: the first result file decides when to kill
        assert driver.poll() is None, f"the driver exited early:\n{first_log.read_text()[-4000:]}"
        os.killpg(driver.pid, signal.SIGKILL)  # the driver only: the cluster's nodes live on
        driver.wait()
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    finished = {d.name: (d / RESULT_FILE).stat().st_mtime_ns for d in _trial_dirs(trials)
                if (d / RESULT_FILE).is_file()}
    assert finished and len(finished) < 3, finished

    resumed = subprocess.run(_tune_cmd(shards, tmp_path, tracking_server.uri, "auto", "tune.resume=true"),
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=GUARD_S,
                             start_new_session=True)
    output = resumed.stdout + resumed.stderr
    (tmp_path / "resumed.log").write_text(output)
    assert resumed.returncode == 0, output[-5000:]
    summary = json.loads((tmp_path / "runs" / "tune" / "cluster" / "summary.json").read_text())
    assert summary["trials"] == 3 and summary["errored"] == 0, summary
    done = [d for d in _trial_dirs(trials) if (d / RESULT_FILE).is_file()]
    assert len(done) == 3, [d.name for d in _trial_dirs(trials)]
    for name, stamp in finished.items():  # a trial that had finished before the kill did not run again
        assert (trials / name / RESULT_FILE).stat().st_mtime_ns == stamp, name
    # each trial was a 2-rank group; SPREAD put its two ranks on the two nodes
    placements = {d.name: {json.loads(p.read_text())["rank"]: json.loads(p.read_text())["node_id"]
                           for p in d.glob(WORKER_FILE.format(rank="*"))} for d in done}
    assert all(set(ranks) == {0, 1} for ranks in placements.values()), placements
    assert any(ranks[0] != ranks[1] for ranks in placements.values()), placements
    # the tracking server: one parent run, one child run per trial, no SQLite lock anywhere
    client = mlflow.MlflowClient(tracking_server.uri)
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["stage"] == "tune"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    # one finished child per trial; a trial the kill caught before its first checkpoint started again fresh, and
    # its killed attempt is a child of its own, ended KILLED (it used to stay RUNNING)
    statuses = [(c.info.run_name, c.info.status) for c in children]
    assert sorted(n for n, st in statuses if st == "FINISHED") == sorted(f"{d.name}-train" for d in done), statuses
    assert all(st in ("FINISHED", "KILLED") for _, st in statuses), statuses
    assert {n for n, st in statuses if st == "KILLED"} <= {f"{name}-train" for name in
                                                           {d.name for d in done} - set(finished)}, statuses
    # every finished child logged its validation; a killed attempt may have died before its first evaluation
    assert all(c.data.metrics.get("val/loss") is not None for c in children if c.info.status == "FINISHED"), [
        (c.info.run_name, c.info.status, sorted(c.data.metrics)) for c in children]
    for where, text in (("server", tracking_server.log.read_text()), ("first driver", first_log.read_text()),
                        ("resumed driver", output)):
        assert not [e for e in LOCK_ERRORS if e in text], where
    print(json.dumps({"placements": placements, "killed_after": sorted(finished)}, indent=1))


def _digest(out: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()}


@pytest.mark.slow
def test_slides_tile_on_the_cluster_matches_a_local_run(cluster, tmp_path):
    """`--ray-address ADDR` tiles on the cluster; `--ray-address local` starts a fresh instance even though a
    cluster is recorded in RAY_TMPDIR (a bare `ray.init()` would join it); both match a run without Ray."""
    from mmlnb_dist.cli import main

    demo = tmp_path / "demo"
    assert main(["slides", "synth", "--out", str(demo), "--per-class", "1", "--size", "1024"]) == 0

    def tile(out: Path, *extra: str) -> str:
        cmd = [sys.executable, "-m", "mmlnb_dist.cli", "slides", "tile", "--slides", str(demo), "--labels",
               str(demo / "labels.csv"), "--out", str(out), "--quiet", "--max-tiles", "6", *extra]
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=GUARD_S)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        return res.stdout + res.stderr

    joined = tile(tmp_path / "on-cluster", "--ray-address", cluster.address)
    assert f"Connecting to existing Ray cluster at address: {cluster.address}" in joined, joined[-3000:]
    own = tile(tmp_path / "own-instance", "--ray-address", "local")
    assert "Started a local Ray instance" in own and "Connecting to existing Ray cluster" not in own, own[-3000:]
    tile(tmp_path / "local")
    assert (tmp_path / "local" / "manifest.json").is_file()
    assert _digest(tmp_path / "on-cluster") == _digest(tmp_path / "local")
    assert _digest(tmp_path / "own-instance") == _digest(tmp_path / "local")
