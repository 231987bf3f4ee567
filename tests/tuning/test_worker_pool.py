"""Kept worker groups (`tune.worker_pool`): trials of two DeepSpeed ranks run in one group of Ray actors for the
whole search instead of a new Ray Train worker group each.

- The same 2-trial search gives the same metrics in kept groups as in a Ray Train worker group per trial, and
  every trial of it ran in the same two processes (one group built).
- ASHA stops reach the ranks: a stopped trial's ranks leave at the rung (no result file), the next trial runs
  in the same group.
- A trial whose rank 1 fails while rank 0 waits in a collective errors, its group is discarded and the next
  trial gets a new one, and runs.
- On GPU nodes the ranks of a group on one node see each other's GPUs (as in Ray Train's worker groups, for
  NCCL's peer-to-peer paths) and each picks its own (checked on the assignment: this machine has no GPU).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mmlnb_dist.config import load_config

from support.fusion import make_shards

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("pool"), n=90, size=48)


def _search(shards: Path, out: Path, grid: str, *extra: str):
    """A 2-rank search over `train.lr` (one trial at a time); returns the summary and, per trial in grid order,
    (lr, val/loss or None, the result file or None, the pids of ranks 0 and 1)."""
    from mmlnb_dist.tuning.driver import run_search
    from mmlnb_dist.tuning.trial import WORKER_FILE, read_trial_result

    space = out / "space.yaml"
    space.parent.mkdir(parents=True, exist_ok=True)
    space.write_text(f"params:\n  train.lr: {{grid: {grid}}}\n")
    cfg = load_config(CPU_DEMO, [
        f"data.shards={shards}", f"run.output_dir={out / 'runs'}", "tracking.backends=[mlflow]",
        "data.loader.num_workers=0", "data.loader.image_size=32", "train.epochs=3", "tune.metric=val/loss",
        "tune.mode=min", "tune.searcher=grid", "tune.num_samples=1", "tune.max_failures=0", "tune.workers_per_trial=2",
        *extra])
    summary = run_search(cfg, space)
    with open(Path(summary["experiment_dir"]) / "trials.csv") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["trial_id"])
    trials = []
    for row in rows:
        run_dir = Path(row["run_dir"])
        pids = tuple(json.loads((run_dir / WORKER_FILE.format(rank=r)).read_text())["pid"]
                     if (run_dir / WORKER_FILE.format(rank=r)).is_file() else None for r in range(2))
        trials.append((float(row["train.lr"]), float(row["val/loss"]) if row["val/loss"] else None,
                       read_trial_result(run_dir), pids))
    return summary, trials


@pytest.mark.slow
def test_kept_groups_give_ray_trains_metrics_in_one_group(shards, tmp_path):
    import ray

    from mmlnb_dist.tuning.driver import _init_ray

    grid = "[3.0e-3, 1.0e-3]"
    # Two epochs: equal metrics after a second epoch (the optimizer's, scheduler's and loader's state carried
    # across an epoch boundary, a second report relayed) show what three did, at two thirds of the training.
    # One Ray instance, started as the driver starts it (with the profile's Ray Train poll interval), serves both
    # searches: a start costs 5-15 s on two busy cores. 2 CPUs for the group; Ray Train's trial process holds one
    # more while its 2 workers run (Ray told of 3; one trial at a time, so the kept groups' search uses 2 of them).
    assert _init_ray(load_config(CPU_DEMO, [f"run.output_dir={tmp_path}", "tune.num_cpus=3"]))
    try:
        kept, pooled = _search(shards, tmp_path / "kept", grid, "tune.scheduler=fifo", "tune.worker_pool=true",
                               "tune.num_cpus=2", "train.epochs=2")
        fresh, trained = _search(shards, tmp_path / "fresh", grid, "tune.scheduler=fifo", "tune.worker_pool=false",
                                 "tune.num_cpus=3", "train.epochs=2")
    finally:
        ray.shutdown()
    assert kept["errored"] == 0 and fresh["errored"] == 0, (kept, fresh)
    assert [lr for lr, *_ in pooled] == [lr for lr, *_ in trained] == [3e-3, 1e-3]
    for (lr, loss, result, _), (_, ray_train_loss, _, _) in zip(pooled, trained):
        assert result is not None and loss == pytest.approx(ray_train_loss, rel=1e-6), lr
    assert kept["worker_groups_built"] == 1 and "worker_groups_built" not in fresh
    assert len({pids for *_, pids in pooled}) == 1 and None not in pooled[0][3]  # both trials, same two ranks
    assert pooled[0][2]["pid"] == pooled[0][3][0]  # rank 0 of the group wrote the result
    assert len({pids for *_, pids in trained}) == 2  # Ray Train: new processes per trial


@pytest.mark.slow
def test_asha_stops_reach_the_kept_groups_ranks(shards, tmp_path):
    summary, trials = _search(shards, tmp_path, "[3.0e-3, 1.0e-7]", "tune.num_samples=2", "tune.scheduler=asha",
                              "tune.grace_period=1", "tune.reduction_factor=2", "tune.worker_pool=true",
                              "tune.num_cpus=2")
    assert summary["trials"] == 4 and summary["errored"] == 0, summary
    assert summary["stopped_early"] >= 1 and summary["worker_groups_built"] == 1, summary
    stopped = [t for t in trials if t[2] is None]
    assert len(stopped) == summary["stopped_early"]  # their ranks left at the rung: rank 0 wrote no result
    assert len({pids for *_, pids in trials}) == 1  # and the next trial ran in the same group


@pytest.mark.slow
def test_a_failed_trials_group_is_built_anew(shards, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))  # the Ray workers import the failing target from there
    summary, trials = _search(shards, tmp_path, "[3.0e-3, 1.0e-7, 1.0e-3]", "tune.scheduler=fifo",
                              "tune.worker_pool=true", "tune.num_cpus=2", "tune.recipe=support.failing_trial:run")
    assert summary["trials"] == 3 and summary["errored"] == 1, summary
    first, failed, last = trials
    assert failed[2] is None and first[2] is not None and last[2] is not None, trials
    assert summary["worker_groups_built"] == 2, summary
    # Rank 1 records its pid before it fails; rank 0 may be discarded with the group before it records its own.
    ran_in = {pid for pid in failed[3] if pid is not None}
    assert failed[3][1] is not None and ran_in <= set(first[3]), trials  # the failing trial ran in the first group
    assert not set(last[3]) & set(first[3]), trials  # and that group was not reused


def test_ranks_on_one_node_see_each_others_gpus_and_pick_their_own():
    from mmlnb_dist.tuning.pool import shared_gpus

    # two nodes; Ray gave node a GPUs 10 and 2 (numeric order, not text order), node b GPU 0; one CPU-only rank
    placements = [("a", ["10"]), ("b", ["0"]), ("a", ["2"]), ("c", [])]
    assert shared_gpus(placements) == [("2,10", 1), ("0", 0), ("2,10", 0), None]
    # two ranks sharing one GPU (gpus_per_trial=0.5): one visible device, both use it
    assert shared_gpus([("a", ["3"]), ("a", ["3"])]) == [("3", 0), ("3", 0)]


@pytest.mark.slow
def test_a_retried_trial_whose_process_died_gets_a_new_group_and_others_wait_their_turn():
    """The pool's bookkeeping, without Tune: a trial asking again for the group it holds is a retry whose earlier
    process died without handing it back (its ranks may still run that attempt): the group is replaced. A second
    trial waits while the only group is taken and gets it once handed back; a hand-back from a trial that no
    longer holds it (Tune's callback after the trial's own) changes nothing."""
    import ray

    from mmlnb_dist.config import TuneConfig
    from mmlnb_dist.tuning.pool import start_pool

    ray.init(num_cpus=1, include_dashboard=False)
    try:
        pool = start_pool("test-pool", 1, TuneConfig(workers_per_trial=1, cpus_per_trial=1))
        k, first = ray.get(pool.acquire.remote("t1"))
        assert ray.get(pool.acquire.remote("t2")) is None  # taken
        k2, retried = ray.get(pool.acquire.remote("t1"))
        assert k2 == k and retried[0] != first[0] and ray.get(pool.groups_built.remote()) == 2
        ray.get(pool.release.remote("t1"))
        ray.get(pool.release.remote("t1"))  # again: no-op
        _, second = ray.get(pool.acquire.remote("t2"))
        assert second[0] == retried[0] and ray.get(pool.groups_built.remote()) == 2  # kept, not rebuilt
        ray.get(pool.release.remote("t1", broken=True))  # t1 no longer holds it: t2's group stays
        assert ray.get(second[0].placement.remote())[1] == []  # alive (no GPU here)
        ray.get(pool.shutdown.remote())
    finally:
        ray.shutdown()
