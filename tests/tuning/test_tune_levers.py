"""Search overhead levers (issue 15, item 3) keep results: `tune.reuse_actors` and `tune.placement_strategy`.

- With the recipe in the trial process, a search with `tune.reuse_actors=true` runs its trials in one process
  (the result files record the pid) and reaches the same metrics as the same search with fresh processes.
- `tune.placement_strategy` reaches the trial's Ray Train `ScalingConfig` (checked with a stand-in trainer:
  starting real worker groups on several nodes is the benchmark's business, benchmarks/tune_overhead.py).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mmlnb_dist.config import TuneConfig, load_config

from support.fusion import make_shards

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"


def _in_process_search(shards: Path, out: Path, name: str, reuse: bool, mode: str):
    """`mode`: the `tune.use_ray_train` override, or "" to leave it unset (one worker per trial: in-process)."""
    import ray

    from mmlnb_dist.tuning.driver import run_search
    from mmlnb_dist.tuning.trial import WORKER_FILE, read_trial_result

    space = out / "space.yaml"
    space.parent.mkdir(parents=True, exist_ok=True)
    space.write_text("params:\n  train.lr: {grid: [3.0e-3, 1.0e-4]}\n")
    cfg = load_config(CPU_DEMO, [
        f"data.shards={shards}", f"run.output_dir={out / 'runs'}", "tracking.backends=[mlflow]",
        "data.loader.num_workers=0", "data.loader.image_size=32", "train.epochs=2", "tune.metric=val/loss",
        "tune.mode=min", "tune.num_cpus=2", "tune.scheduler=fifo",
        "tune.searcher=grid", "tune.num_samples=1", "tune.max_failures=0", f"tune.name={name}",
        f"tune.reuse_actors={str(reuse).lower()}"] + ([f"tune.use_ray_train={mode}"] if mode else []))
    assert ray.is_initialized()  # the caller's instance: the search neither starts nor stops one
    summary = run_search(cfg, space)
    assert ray.is_initialized()
    assert summary["trials"] == 2 and summary["errored"] == 0, summary
    with open(Path(summary["experiment_dir"]) / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    by_lr = {}
    for row in rows:
        result = read_trial_result(Path(row["run_dir"]))
        by_lr[float(row["train.lr"])] = (float(row["val/loss"]), result["pid"])
        assert not (Path(row["run_dir"]) / WORKER_FILE.format(rank=0)).exists()  # no Ray Train worker ran it
    return by_lr


@pytest.mark.slow
def test_reused_trial_process_gives_the_same_metrics(tmp_path):
    import ray

    shards = make_shards(tmp_path / "data", n=90, size=48)
    # One Ray instance for both searches (a start costs 5-15 s on two busy cores): Tune ends each search's trial
    # processes with the search, so the second search's pids are its own.
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        # one worker per trial: in the trial process without being told (tune.use_ray_train unset)
        fresh = _in_process_search(shards, tmp_path / "fresh", "fresh", reuse=False, mode="")
        reused = _in_process_search(shards, tmp_path / "reused", "reused", reuse=True, mode="false")
    finally:
        ray.shutdown()
    print(json.dumps({"fresh": fresh, "reused": reused}))
    assert len({pid for _, pid in fresh.values()}) == 2  # a new process per trial
    assert len({pid for _, pid in reused.values()}) == 1  # one process ran both
    assert set(fresh) == set(reused)
    for lr in fresh:
        assert reused[lr][0] == pytest.approx(fresh[lr][0], rel=1e-5, abs=1e-7), lr


@pytest.mark.parametrize("strategy", ["PACK", "SPREAD"])
def test_placement_strategy_reaches_the_worker_group(strategy, tmp_path, monkeypatch):
    import ray.train.torch
    import ray.tune.integration.ray_train

    from mmlnb_dist.tuning.trial import fit_with_ray_train

    seen = {}

    class StandInTrainer:
        def __init__(self, loop, *, scaling_config, **kwargs):
            seen["scaling"] = scaling_config

        def fit(self):
            seen["fit"] = True

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", StandInTrainer)
    # the real callback needs a Tune session: a plain Ray Train callback stands in
    monkeypatch.setattr(ray.tune.integration.ray_train, "TuneReportCallback", ray.train.UserCallback)
    tune_cfg = TuneConfig.model_validate({"placement_strategy": strategy, "workers_per_trial": 2})
    fit_with_ray_train({}, "fusion", tmp_path / "run", tune_cfg, tmp_path / "storage")
    assert seen["fit"] and seen["scaling"].placement_strategy == strategy
    assert seen["scaling"].num_workers == 2


def test_trials_run_in_worker_groups_when_they_have_several_ranks_or_are_told_to():
    from pydantic import ValidationError

    assert TuneConfig().worker_groups is False  # one worker per trial: in the trial process
    assert TuneConfig(workers_per_trial=2).worker_groups is True
    assert TuneConfig(use_ray_train=True).worker_groups is True
    assert TuneConfig(use_ray_train=False).worker_groups is False
    with pytest.raises(ValidationError, match="workers_per_trial=2 needs use_ray_train"):
        TuneConfig(use_ray_train=False, workers_per_trial=2)


def test_trial_processes_are_reused_by_default_unless_each_trial_starts_a_torchtrainer():
    assert TuneConfig().reuse_trial_processes is True  # in-process trials: 0.54x the sequential runs, not 0.93x
    assert TuneConfig(workers_per_trial=2).reuse_trial_processes is True  # kept groups: 0.77x, not 0.95x
    assert TuneConfig(workers_per_trial=2, worker_pool=False).reuse_trial_processes is False  # slower
    assert TuneConfig(use_ray_train=True, worker_pool=False).reuse_trial_processes is False
    assert TuneConfig(reuse_actors=False).reuse_trial_processes is False
    assert TuneConfig(workers_per_trial=2, reuse_actors=True).reuse_trial_processes is True


@pytest.mark.slow
def test_default_search_reuses_its_trial_process_across_asha_stops(tmp_path):
    """The default search (recipe in the trial process, `tune.reuse_actors` unset) under ASHA, one trial at a time:
    the trials it stops early end at their report within Tune's 2 s reset wait, so the next trial runs in the same
    process instead of failing with "Could not re-use actor"."""
    import ray

    from mmlnb_dist.tuning.driver import run_search
    from mmlnb_dist.tuning.trial import read_trial_result

    shards = make_shards(tmp_path / "data", n=90, size=48)
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  train.lr: {grid: [3.0e-3, 1.0e-7]}\n")  # good, hopeless, good, hopeless
    cfg = load_config(CPU_DEMO, [
        f"data.shards={shards}", f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[stdout]",
        "data.loader.num_workers=0", "data.loader.image_size=32", "train.epochs=3", "tune.metric=val/loss",
        "tune.mode=min", "tune.num_cpus=2", "tune.max_concurrent=1", "tune.scheduler=asha", "tune.grace_period=1",
        "tune.reduction_factor=2", "tune.searcher=grid", "tune.num_samples=2", "tune.max_failures=0",
        "tune.name=reused-asha"])
    assert cfg.tune.reuse_trial_processes and not cfg.tune.worker_groups
    assert not ray.is_initialized()
    summary = run_search(cfg, space)
    print(json.dumps(summary, indent=1, default=str))
    assert summary["trials"] == 4 and summary["errored"] == 0, summary
    assert summary["stopped_early"] >= 1, summary
    with open(Path(summary["experiment_dir"]) / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    finished = [read_trial_result(Path(r["run_dir"])) for r in rows if r["completed"] == "True"]
    assert len(finished) >= 2, rows
    assert len({r["pid"] for r in finished}) == 1, [r["pid"] for r in finished]  # one process ran them all
    # each trial's full log is in its folder (its final tables stay off the driver's console, as ablate's do),
    # and a reused process starts a new log for each trial
    for r in rows:
        text = (Path(r["run_dir"]) / "trial.log").read_text()
        assert "recipe] epoch 0 " in text and text.count("recipe] 3 classes") == 1, r["run_dir"]
        if r["completed"] == "True":
            assert "val split, best checkpoint" in text, r["run_dir"]


def test_placement_strategy_default_and_unknown_value():
    from pydantic import ValidationError

    assert TuneConfig().placement_strategy == "PACK"
    with pytest.raises(ValidationError, match="placement_strategy"):
        TuneConfig.model_validate({"placement_strategy": "SCATTER"})


def test_the_searchs_settings_reach_every_process_of_the_search(tmp_path):
    """Ray Train's controller polls its workers every 2 s by default, and each trial's worker group start and
    finish wait for a poll; the search's Ray job carries `tune.train_poll_interval_s` to all its processes. It also
    keeps `print` a print in Ray Train's workers, so a library print the package sends to its log file goes there
    (Ray Train's print patch made DeepSpeed's "... built successfully" a console line per trial)."""
    import ray

    from mmlnb_dist.tuning.driver import _init_ray

    assert TuneConfig().train_poll_interval_s == 2.0  # Ray's own default; the CPU demo profile sets 0.2
    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path}", "tune.num_cpus=1", "tune.train_poll_interval_s=0.3"])
    assert not ray.is_initialized()
    assert _init_ray(cfg) is True
    try:
        @ray.remote(num_cpus=0)
        def seen() -> tuple:
            import os

            return (os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "unset"),
                    os.environ.get("RAY_TRAIN_ENABLE_PRINT_PATCH", "unset"))

        assert ray.get(seen.remote()) == ("0.3", "0")
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_a_search_given_relative_paths_finds_its_shards(tmp_path, monkeypatch):
    """`mmlnb-dist tune ... data.shards=shards/demo` from the folder that holds them: Ray runs each trial in a folder
    of its own, where the relative path named nothing (every trial failed with 'shard folder not found')."""
    import ray

    from mmlnb_dist.tuning.driver import run_search
    from mmlnb_dist.tuning.trial import read_trial_result

    make_shards(tmp_path / "data", n=60, size=48)  # data/shards
    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {grid: [3.0e-3]}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(CPU_DEMO, [
        "data.shards=data/shards", "run.output_dir=runs", "tracking.backends=[stdout]", "data.loader.num_workers=0",
        "data.loader.image_size=32", "train.epochs=1", "tune.metric=val/loss", "tune.mode=min", "tune.num_cpus=1",
        "tune.scheduler=fifo", "tune.searcher=grid", "tune.num_samples=1", "tune.max_failures=0"])
    summary = run_search(cfg, Path("space.yaml"))
    assert not ray.is_initialized()
    assert summary["trials"] == 1 and summary["errored"] == 0, summary
    assert read_trial_result(Path(summary["best_run_dir"])) is not None
    assert Path(summary["experiment_dir"]) == tmp_path / "runs" / "tune" / "search"
