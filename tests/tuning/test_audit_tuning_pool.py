"""Mutation audit of the kept worker groups (`tuning.pool`) and of an ablation study run as trials (`tuning.study`),
without Ray: the pool's bookkeeping on the plain class, a trial's relay with Ray's calls replaced by ones that run at
once, and the resources and concurrency handed to Ray (the Ray-running checks are test_worker_pool.py's, slow)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest


class _Call:
    """`actor.method`: `.remote(...)` runs it at once; `ray.get` gives its value or raises its error, `ray.wait`
    finds the reference ready when `ready(ref)` says so."""

    def __init__(self, fn, ready=lambda ref: True):
        self.fn, self.ready = fn, ready

    def remote(self, *args, **kwargs):
        ref = SimpleNamespace(value=None, error=None)
        try:
            ref.value = self.fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - raised again by ray.get, as Ray does
            ref.error = err
        ref.ready = lambda: self.ready(ref)
        return ref


def _get(ref):
    if ref.error is not None:
        raise ref.error
    return ref.value


def _trial(monkeypatch, reports, rank_error=None, stop_at=None):
    """`run_in_pool` for a trial whose rank 0 makes `reports`, then ends (raising `rank_error`, if given); the
    scheduler stops it at the report of epoch `stop_at`. Returns (what Tune got, rank 0's answers, the pool's
    release calls, what the trial raised)."""
    import ray

    from mmlnb_dist.tuning.pool import run_in_pool

    pending, answers, released, told = list(reports), [], [], []

    def run(token, cfg, recipe):
        if rank_error is not None:
            raise rank_error
        return {"stopped": False}

    rank0 = SimpleNamespace(next_report=_Call(lambda token, wait: pending.pop(0) if pending else None,
                                              ready=lambda ref: ref.value is not None),
                            answer=_Call(lambda token, decision: answers.append(decision)),
                            run=_Call(run, ready=lambda ref: not pending))
    pool = SimpleNamespace(acquire=_Call(lambda tid: (0, [rank0])),
                           release=_Call(lambda tid, broken=False: released.append((tid, broken))))
    monkeypatch.setattr(ray, "get_actor", lambda name: pool)
    monkeypatch.setattr(ray, "get", _get)
    monkeypatch.setattr(ray, "wait", lambda refs, num_returns=1: ([next(r for r in refs if r.ready())], []))

    def report(epoch, metrics):
        told.append((epoch, metrics))
        if epoch == stop_at:
            raise SystemExit(0)  # as Tune's report stops a trial the scheduler stopped

    try:
        run_in_pool("pool", "t1", {}, "fusion", report)
        raised = None
    except BaseException as err:  # noqa: BLE001
        raised = err
    return told, answers, released, raised


def test_a_trial_in_a_kept_group_relays_every_report_and_hands_the_group_back_sound(monkeypatch):
    told, answers, released, raised = _trial(monkeypatch, [(0, {"m": 0.5}), (1, {"m": 0.6})])
    assert told == [(0, {"m": 0.5}), (1, {"m": 0.6})] and answers == ["go", "go"]
    assert released == [("t1", False)] and raised is None


def test_a_scheduler_stop_tells_the_ranks_to_stop_and_keeps_the_group(monkeypatch):
    told, answers, released, raised = _trial(monkeypatch, [(0, {"m": 0.5}), (1, {"m": 0.6})], stop_at=0)
    assert told == [(0, {"m": 0.5})] and answers == ["stop"]  # every rank leaves at that epoch
    assert released == [("t1", False)] and isinstance(raised, SystemExit)  # the group is sound: reused


def test_a_rank_that_failed_fails_the_trial_and_gets_its_group_discarded(monkeypatch):
    told, answers, released, raised = _trial(monkeypatch, [], rank_error=RuntimeError("rank 1 lost"))
    assert isinstance(raised, RuntimeError) and str(raised) == "rank 1 lost"
    assert released == [("t1", True)]  # its ranks may be stuck in a collective


def _pool(monkeypatch, groups=1):
    from mmlnb_dist.tuning.pool import WorkerPool

    pool = WorkerPool(groups, 1, {"CPU": 1}, "PACK", "gloo", 10)
    built, discarded, stopped = [], [], []

    def build(k):
        group = [SimpleNamespace(name=f"g{len(built)}", stop_current=_Call(lambda: stopped.append(k)))]
        built.append(group[0].name)
        return group

    monkeypatch.setattr(pool, "_build", build)
    monkeypatch.setattr(pool, "_discard", lambda k, group: discarded.append(group[0].name))
    return pool, built, discarded, stopped


def test_the_pool_lends_a_group_to_one_trial_at_a_time_and_rebuilds_only_a_broken_one(monkeypatch):
    pool, built, discarded, stopped = _pool(monkeypatch)
    _, group = pool.acquire("t1")
    assert pool.acquire("t2") is None  # taken
    pool.release("t1")
    assert stopped == [0] and discarded == []
    assert pool.acquire("t2")[1] is group and built == ["g0"]  # kept, not rebuilt
    pool.release("t1", broken=True)  # t1 holds nothing now (Tune's callback after the trial's own hand-back)
    assert discarded == [] and pool.acquire("t3") is None  # t2 still holds it
    pool.release("t2", broken=True)
    assert discarded == ["g0"]
    assert pool.acquire("t3")[1][0].name == "g1" and built == ["g0", "g1"]
    assert pool.acquire("t3")[1][0].name == "g2" and discarded == ["g0", "g1"]  # a retry: its old group replaced


def test_a_rank_answers_only_the_trial_it_runs():
    from mmlnb_dist.tuning.pool import GO, STOP, RankWorker

    rank = RankWorker(0, 1)
    rank._token = "t1-1"
    rank.answer("t0-9", STOP)  # a previous trial's late answer
    rank.answer("t1-1", GO)
    assert rank._answers.get_nowait() == GO and rank._answers.empty()
    assert rank.next_report("t1-1", 0.0) is None  # no report queued for it yet


@pytest.mark.parametrize("gpus, resources, backend", [(0.0, {"CPU": 2.0}, "gloo"),
                                                      (0.5, {"CPU": 2.0, "GPU": 0.5}, "nccl")])
def test_the_pool_is_built_with_each_ranks_cpus_and_gpus(monkeypatch, gpus, resources, backend):
    import ray

    from mmlnb_dist.config import TuneConfig
    from mmlnb_dist.tuning.pool import start_pool

    seen = {}

    class Remote:
        def __init__(self, cls):
            pass

        def options(self, **kwargs):
            seen["options"] = kwargs
            return self

        def remote(self, *args):
            seen["args"] = args
            return "pool"

    monkeypatch.setattr(ray, "remote", Remote)
    tune_cfg = TuneConfig(workers_per_trial=2, cpus_per_trial=2, gpus_per_trial=gpus, placement_strategy="SPREAD")
    assert start_pool("p", 3, tune_cfg) == "pool"
    assert seen["args"] == (3, 2, resources, "SPREAD", backend, 1800)
    assert seen["options"]["name"] == "p"


def test_a_study_runs_its_trials_with_the_asked_resources_and_concurrency(tmp_path, monkeypatch):
    import ray
    from ray import tune

    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.tracking import server
    from mmlnb_dist.studies import RowJob
    from mmlnb_dist.tuning.study import train_as_trials

    seen = {}

    class Tuner:
        def __init__(self, trainable, param_space, tune_config, run_config):
            seen.update(param_space=param_space, tune_config=tune_config)

        def fit(self):
            return [SimpleNamespace(config={"run": "a-seed0"}, error=None, metrics={})]

    def with_resources(fn, res):
        seen["resources"] = res
        return fn

    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # no Ray started
    monkeypatch.setattr(tune, "Tuner", Tuner)
    monkeypatch.setattr(tune, "with_parameters", lambda fn, **kw: fn)
    monkeypatch.setattr(tune, "with_resources", with_resources)
    monkeypatch.setattr(server, "start_server", lambda uri, *a, **kw: ("proc", "http://h:1"))
    monkeypatch.setattr(server, "stop_server", lambda proc: seen.setdefault("stopped", proc))
    cfg = load_config(None, [f"run.output_dir={tmp_path}/runs", "run.name=study", "tune.max_concurrent=2",
                             "tune.cpus_per_trial=2", "tune.gpus_per_trial=0.5", "tracking.backends=[stdout]"])
    run_cfg = load_config(None, [f"run.output_dir={tmp_path}/runs/study", "run.name=a-seed0",
                                 f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", "tracking.backends=[mlflow]"])
    train_as_trials(cfg, {"a-seed0": RowJob("a", 0, run_cfg, "f" * 16)})
    assert seen["resources"] == {"CPU": 2.0, "GPU": 0.5}
    assert seen["tune_config"].max_concurrent_trials == 2
    # SQLite has one writer: the run logs through the server, and its folder records the store the server served
    assert (run_cfg.tracking.uri, run_cfg.tracking.server) == (f"sqlite:///{tmp_path}/mlflow.db", "http://h:1")
    assert seen["stopped"] == "proc"
