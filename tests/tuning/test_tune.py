"""Ray Tune on the CPU against a real local Ray instance, with the real fusion recipe (made tiny).

- 4 trials, each in a fresh Ray Train TorchTrainer, ASHA on val/loss: at least one stopped early, one MLflow
  parent run with 4 child runs, the best config written, the frozen-feature cache computed once.
- A search interrupted after its first finished trial resumes without rerunning that trial.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mmlnb_dist.config import load_config

from support.fusion import make_shards

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"


def _overrides(shards: Path, out: Path, extra=()):
    return [f"data.shards={shards}", f"run.output_dir={out}", "tracking.backends=[mlflow]",
            "data.loader.num_workers=0", "data.loader.image_size=32", "train.epochs=3",
            "tune.metric=val/loss", "tune.mode=min", "tune.num_cpus=2", *extra]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("tune"), n=90, size=48)


def test_space_files_load_and_give_valid_configs():
    from mmlnb_dist.config import config_from_dict
    from mmlnb_dist.tuning.space import apply_params, load_space, to_tune_space

    for path in sorted((ROOT / "tune" / "spaces").glob("*.yaml")):
        space = load_space(path)
        to_tune_space(space, "random")
        base = load_config(CPU_DEMO).model_dump(mode="json")
        lows = {k: (v.get("uniform") or v.get("loguniform") or v.get("choice") or v.get("grid"))[0]
                for k, v in space.items()}
        config_from_dict(apply_params(base, lows, space)[0])
    assert {p.stem for p in (ROOT / "tune" / "spaces").glob("*.yaml")} >= {"curriculum", "optimisation", "lora",
                                                                         "joint"}


def test_bad_space_key_is_named(tmp_path):
    from mmlnb_dist.tuning.space import SpaceError, load_space

    bad = tmp_path / "bad.yaml"
    bad.write_text("params:\n  train.lrr: {uniform: [0, 1]}\n")
    with pytest.raises(SpaceError, match="train.lrr"):
        load_space(bad)


@pytest.mark.slow
def test_four_trial_asha_search_with_torchtrainer(shards, tmp_path):
    import mlflow
    import ray

    from mmlnb_dist.tuning.driver import run_search

    space = tmp_path / "space.yaml"
    # a good and a hopeless learning rate, twice: ASHA must stop the hopeless ones at the first rung
    space.write_text("params:\n  train.lr: {grid: [3.0e-3, 1.0e-7]}\n")
    cfg = load_config(CPU_DEMO, _overrides(shards, tmp_path / "runs", [
        "tune.searcher=grid", "tune.num_samples=2", "tune.grace_period=1", "tune.reduction_factor=2"]))
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        t0 = time.time()
        summary = run_search(cfg, space)
        wall = time.time() - t0
    finally:
        ray.shutdown()
    print(json.dumps(summary, indent=1, default=str), f"wall {wall:.0f}s")
    assert summary["trials"] == 4 and summary["errored"] == 0
    assert summary["stopped_early"] >= 1
    # MLflow: one parent, four children
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["stage"] == "tune"
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 4
    assert all(c.data.metrics.get("val/loss") is not None for c in children)
    # the best config is a ready-to-use full config
    best = load_config(summary["best_config"])
    assert set(summary["best_params"]) == {"train.lr"}
    assert best.train.lr == pytest.approx(summary["best_params"]["train.lr"])
    assert best.train.epochs == 3 and best.data.shards == Path(shards)
    # the frozen text encoder's features were computed once for all trials
    cache = summary["cache"]
    assert cache["cache_files"] == 1, cache
    assert cache["cache/misses"] <= 1 and cache["cache/hits"] >= 2, cache


def _tune_cmd(shards, out, *extra):
    return [sys.executable, "-m", "mmlnb_dist.cli", "tune", "--config", str(CPU_DEMO),
            "--space", str(out / "space.yaml"),
            *_overrides(shards, out / "runs", ["tune.use_ray_train=false", "tune.scheduler=fifo",
                                               "tune.num_samples=3", "tune.name=resumable", "train.epochs=2"]),
            *extra]


@pytest.mark.slow
def test_interrupted_search_resumes_without_rerunning_finished_trials(shards, tmp_path):
    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {loguniform: [1.0e-3, 3.0e-3]}\n")
    trials = tmp_path / "runs" / "tune" / "resumable" / "trials"
    # a clean environment: no rendezvous variables left by trainings earlier in this pytest process
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONUNBUFFERED"] = "1"
    log = tmp_path / "first.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(_tune_cmd(shards, tmp_path), cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 300
        done = []
        while time.time() < deadline and not done and proc.poll() is None:
            done = sorted(trials.glob("*/trial_result.json")) if trials.is_dir() else []
            time.sleep(0.5)
        assert done, f"no trial finished (driver exit code {proc.poll()}); log tail:\n{log.read_text()[-4000:]}"
        proc.send_signal(signal.SIGINT)  # Ctrl-C: Tune saves its state and stops
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    first = done[0]
    stamp = first.stat().st_mtime_ns
    finished_before = {p.parent.name for p in trials.glob("*/trial_result.json")}
    assert len(finished_before) < 3, "the search finished before it could be interrupted"

    res = subprocess.run(_tune_cmd(shards, tmp_path, "tune.resume=true"), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    finished = {p.parent.name for p in trials.glob("*/trial_result.json")}
    assert len(finished) == 3 and finished_before <= finished
    assert first.stat().st_mtime_ns == stamp  # the finished trial was not run again
    summary = json.loads((tmp_path / "runs" / "tune" / "resumable" / "summary.json").read_text())
    assert summary["trials"] == 3 and summary["errored"] == 0
    assert yaml.safe_load(Path(summary["best_config"]).read_text())["train"]["epochs"] == 2


def test_starting_an_existing_search_again_is_a_clear_error(shards, tmp_path):
    (tmp_path / "runs" / "tune" / "resumable").mkdir(parents=True)
    (tmp_path / "runs" / "tune" / "resumable" / "search.json").write_text("{}")
    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {loguniform: [1.0e-3, 3.0e-3]}\n")
    res = subprocess.run(_tune_cmd(shards, tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "tune.resume=true" in res.stderr
