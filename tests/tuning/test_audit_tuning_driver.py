"""Mutation audit of the search driver and its parts (`tuning.driver`, `results`, `outcome`, `algorithms`, `trial`,
`figure`): what the search hands Ray Tune (each trial's resources, the searcher, the scheduler), how it reads the
trials back (status, diverged and stopped-early trials, the best pick), and what a trial reports when it diverges or
was already finished. Ray's Tuner is replaced by one that returns given results; no Ray instance is started."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from support.tune_search import replace_ray_tuner

from mmlnb_dist.config import load_config
from mmlnb_dist.core.recipe import FINAL_REPORT

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"
METRIC = "val/balanced_accuracy"


def _row(tid, status, value, completed=True):
    return {"trial_id": tid, "status": status, METRIC: value, "completed": completed}


def test_the_best_pick_keeps_the_first_of_equals_and_skips_infinite_values():
    """Equal metrics: the trial that started first is named best (in both modes); an infinite metric (a loss that
    overflowed without going NaN) is no result and is never picked."""
    from mmlnb_dist.tuning.results import pick_best

    tied = [_row("a", "OK", 0.8), _row("b", "OK", 0.8)]
    assert pick_best(tied, METRIC, "max")["trial_id"] == "a"
    assert pick_best(tied, METRIC, "min")["trial_id"] == "a"
    assert pick_best([_row("a", "OK", math.inf), _row("b", "OK", 0.5)], METRIC, "max")["trial_id"] == "b"
    assert pick_best([_row("a", "OK", -math.inf), _row("b", "OK", 0.5)], METRIC, "min")["trial_id"] == "b"


def _search(tmp_path, monkeypatch, results, *extra, name="audit", pool=None):
    """`run_search` with Ray's Tuner replaced; returns (summary, what the driver handed Tune)."""
    import ray

    from mmlnb_dist.tuning import driver

    seen = {}

    class Tuner:
        def __init__(self, trainable, param_space, tune_config, run_config):
            seen.update(tune_config=tune_config, run_config=run_config)

        def fit(self):
            return list(results)

        @staticmethod
        def can_restore(path):
            return True

        @classmethod
        def restore(cls, path, trainable, **kwargs):
            seen["restored"] = path
            return cls.__new__(cls)

    def with_resources(fn, res):
        seen["resources"] = res
        return fn

    monkeypatch.setattr(driver, "check_resources", lambda cfg: None)  # a GPU asked of this GPU-less machine
    replace_ray_tuner(monkeypatch, Tuner, with_resources)
    if pool is not None:
        from mmlnb_dist.tuning import pool as pool_module

        monkeypatch.setattr(pool_module, "start_pool", lambda *args: pool)
        monkeypatch.setattr(ray, "get", lambda ref: ref)
        monkeypatch.setattr(ray, "kill", lambda actor: None)
    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {grid: [1.0e-4, 5.0e-3, 1.0e-3]}\n")
    cfg = load_config("cpu-demo", [f"data.shards={tmp_path}/shards", f"run.output_dir={tmp_path}/runs",
                                   "tracking.backends=[stdout]", "train.epochs=2", "tune.num_cpus=2",
                                   f"tune.name={name}", "tune.searcher=grid", "tune.num_samples=1", *extra])
    return driver.run_search(cfg, tmp_path / "space.yaml"), seen


def _result(tid, lr, value, **metrics):
    return SimpleNamespace(config={"train.lr": lr}, error=None,
                           metrics={METRIC: value, "trial_id": tid, "training_iteration": 2, **metrics})


def test_diverged_and_stopped_trials_are_ended_trials_of_a_finished_search(tmp_path, monkeypatch):
    """A trial whose run diverged (its result file says so, its last report NaN) is DIVERGED, not OK and not
    completed, and does not make the search 'interrupted'; a trial ASHA stopped (no result file) counts as stopped
    early; the cache counts of all trials add up; Tune is given the trial's CPUs and GPUs, the process reuse and
    the retry count asked for."""
    trials = tmp_path / "runs" / "tune" / "audit" / "trials"
    for tid, result in (("done", {METRIC: 0.7}), ("div", {"diverged": "loss not finite at step 3"})):
        (trials / f"audit-{tid}").mkdir(parents=True)
        (trials / f"audit-{tid}" / "trial_result.json").write_text(json.dumps(result))
    results = [_result("done", 1e-4, 0.7, **{"cache/hits": 2.0}),
               _result("div", 5e-3, math.nan, diverged=1.0, **{FINAL_REPORT: 1.0}),
               _result("early", 1e-3, 0.6, **{"cache/hits": 3.0})]
    summary, seen = _search(tmp_path, monkeypatch, results, "tune.cpus_per_trial=2", "tune.gpus_per_trial=0.5",
                            "tune.max_failures=3")
    assert "interrupted" not in summary and summary["best_trial_id"] == "done", summary
    state = json.loads((Path(summary["experiment_dir"]) / "search.json").read_text())
    assert (state["metric"], state["mode"]) == (METRIC, "max")  # what a resume is checked against
    assert (summary["trials"], summary["diverged"], summary["errored"], summary["stopped_early"]) == (3, 1, 0, 1)
    assert summary["cache"]["cache/hits"] == 5
    assert seen["resources"] == {"CPU": 2.0, "GPU": 0.5}
    assert seen["tune_config"].reuse_actors is True  # in-process trials: one process runs them in turn
    assert seen["run_config"].failure_config.max_failures == 3
    from mmlnb_dist.tuning.results import trial_rows

    rows = {r["trial_id"]: r for r in trial_rows(results, {"trials": trials}, load_config(
        "cpu-demo", ["tune.name=audit"]))}
    assert (rows["div"]["status"], rows["div"]["completed"]) == ("DIVERGED", False)
    assert rows["div"]["error"] == "loss not finite at step 3"
    assert (rows["done"]["status"], rows["done"]["completed"]) == ("OK", True)
    assert (rows["early"]["status"], rows["early"]["completed"]) == ("OK", False)


def test_the_best_config_of_a_resumed_search_is_a_fresh_start(tmp_path, monkeypatch):
    """best.yaml is ready for `train` (or a new `tune`): a resumed search's own `tune.resume=true` is not in it."""
    results = [_result("done", 1e-4, 0.7)]
    _search(tmp_path, monkeypatch, results)
    summary, seen = _search(tmp_path, monkeypatch, results, "tune.resume=true")
    assert seen["restored"] == summary["experiment_dir"] and summary["best_trial_id"] == "done"
    assert load_config(Path(summary["best_config"])).tune.resume is False


def test_a_resume_of_a_search_that_never_started_is_refused_and_writes_nothing(tmp_path, monkeypatch):
    """tune.resume=true where no search was started (a typo in tune.name): refused before Ray starts, instead of
    a new search that the user took for the resumed one."""
    from mmlnb_dist.tuning.checks import SearchError

    with pytest.raises(SearchError, match="nothing to resume at .*drop tune.resume=true"):
        _search(tmp_path, monkeypatch, [], "tune.resume=true", name="typo")
    assert not (tmp_path / "runs" / "tune" / "typo").exists()


class _Pool:
    """The kept worker groups' pool actor, as the driver uses it (Ray's `get` replaced by the identity)."""

    def __init__(self):
        self.groups_built = SimpleNamespace(remote=lambda: 1)
        self.shutdown = SimpleNamespace(remote=lambda: None)


@pytest.mark.parametrize("extra, resources", [
    (["tune.use_ray_train=true", "tune.worker_pool=false"], {"CPU": 1}),  # the trial process drives a TorchTrainer
    (["tune.workers_per_trial=2", "tune.worker_pool=true"], {"CPU": 0, "memory": 1}),  # the pool's groups hold them
])
def test_a_trial_process_that_only_drives_worker_groups_asks_for_what_it_uses(tmp_path, monkeypatch, extra, resources):
    pool = _Pool() if "tune.worker_pool=true" in extra else None
    summary, seen = _search(tmp_path, monkeypatch, [], *extra, pool=pool)
    assert seen["resources"] == resources
    assert summary.get("worker_groups_built") == (1 if pool else None)


def test_a_search_of_one_trial_at_a_time_logs_to_sqlite_and_concurrent_ones_through_a_server(tmp_path, monkeypatch):
    from mmlnb_dist.core.tracking import server
    from mmlnb_dist.tuning.driver import _dirs, _tracking

    started = []
    monkeypatch.setattr(server, "start_server", lambda uri, *a, **kw: started.append(uri) or ("proc", "http://h:1"))
    for n, through in ((1, None), (2, "http://h:1")):
        cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[mlflow]",
                                       f"tune.max_concurrent={n}"])
        store, server_uri, proc = _tracking(cfg, _dirs(cfg))
        # the store is the SQLite file either way (what the trials' folders record); the server is logged through
        assert store == f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}", (n, store)
        assert server_uri == through and (proc is None) == (n == 1), (n, server_uri, proc)
    assert len(started) == 1


def test_the_searcher_holds_the_concurrency_and_seed_asked_for():
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    from mmlnb_dist.tuning.algorithms import searcher

    alg = searcher(load_config("cpu-demo", ["tune.searcher=random", "tune.max_concurrent=3"]))
    assert isinstance(alg, BasicVariantGenerator) and alg.max_concurrent == 3
    alg = searcher(load_config("cpu-demo", ["tune.searcher=optuna", "tune.max_concurrent=3", "tune.seed=7",
                                            "tune.metric=val/loss"]))
    assert isinstance(alg, ConcurrencyLimiter) and alg.max_concurrent == 3
    assert (alg.searcher._seed, alg.searcher._mode, alg.searcher._metric) == (7, "min", "val/loss")


def _feed(sched, reports):
    """Each (trial, iteration, loss, extra) as Tune's controller hands it to the scheduler; the actions."""
    trials, actions = {}, []
    for tid, iteration, loss, extra in reports:
        if tid not in trials:
            trials[tid] = SimpleNamespace(trial_id=tid)
            sched.on_trial_add(None, trials[tid])
        actions.append(sched.on_trial_result(None, trials[tid], {"training_iteration": iteration,
                                                                 "val/loss": loss, **extra}))
    return actions


def test_fifo_lets_every_trial_run_and_asha_never_stops_a_trials_last_report(tmp_path):
    """tune.scheduler=fifo gets no ASHA. Under ASHA a trial at its last epoch, or at a report marked FINAL_REPORT,
    is never stopped (Ray's ASHA stops every trial at max_t: it would kill it while it writes its result), while a
    poor trial before its end still is."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from mmlnb_dist.tuning.algorithms import scheduler

    common = [f"run.output_dir={tmp_path}/runs", "train.epochs=3", "tune.metric=val/loss", "tune.grace_period=1",
              "tune.reduction_factor=2"]
    assert not isinstance(scheduler(load_config(CPU_DEMO, [*common, "tune.scheduler=fifo"])), ASHAScheduler)
    go, stop = TrialScheduler.CONTINUE, TrialScheduler.STOP

    def actions(reports):
        sched = scheduler(load_config(CPU_DEMO, [*common, "tune.scheduler=asha"]), 3)
        sched.set_search_properties("val/loss", "min")
        return _feed(sched, reports)

    good = [("good", 1, 0.1, {"epoch": 0})]
    assert actions(good + [("poor", 1, 0.9, {"epoch": 0})]) == [go, stop]  # a poor trial before its end
    assert actions([("a", 3, 0.1, {"epoch": 2})]) == [go]  # its last epoch (ASHA alone: stop at max_t)
    assert actions([("a", 3, 0.1, {"epoch": 0, FINAL_REPORT: 1.0})]) == [go]  # marked as its last report
    assert actions([("a", 3, 0.1, {"epoch": 2, FINAL_REPORT: 0.0})]) == [stop]  # the mark says: not its last


def _trial_ctx(tmp_path, space=None):
    return {"base": load_config(CPU_DEMO).model_dump(mode="json"), "space": space or {}, "name": "s",
            "trials_dir": str(tmp_path), "cache_dir": str(tmp_path / "c"), "uri": "sqlite:///t.db",
            "parent_run_id": "p1", "recipe": "fusion", "tune": {}}


def test_a_trial_config_resumes_only_real_checkpoints_and_never_registers(tmp_path):
    from mmlnb_dist.tuning.trial import trial_config

    (tmp_path / "s-t0" / "checkpoints").mkdir(parents=True)  # made, but the first attempt saved nothing
    ctx = _trial_ctx(tmp_path)
    ctx["base"]["tracking"]["register_name"] = "fusion-model"  # the search registers its best trial's model
    cfg = trial_config({}, ctx, "t0")["cfg"]
    assert cfg["run"]["resume"] is False
    assert (cfg["tracking"]["uri"], cfg["tracking"]["parent_run_id"], cfg["tracking"]["register_name"]) == \
        ("sqlite:///t.db", "p1", None)  # a child run of the search; only the driver registers


def test_a_second_lost_folder_of_one_trial_id_does_not_replace_the_first(tmp_path):
    from mmlnb_dist.tuning.trial import set_aside_other_trials_folder

    folder = tmp_path / "s-t0"
    (tmp_path / "s-t0.lost-1").mkdir()
    (tmp_path / "s-t0.lost-1" / "keep").write_text("first lost trial")
    folder.mkdir()
    (folder / "trial_params.json").write_text(json.dumps({"train.lr": 0.1}))
    assert set_aside_other_trials_folder(folder, {"train.lr": 0.2}) == tmp_path / "s-t0.lost-2"
    assert (tmp_path / "s-t0.lost-1" / "keep").read_text() == "first lost trial"


@pytest.mark.parametrize("reported, epoch", [(2, 3), (None, 0)])
def test_a_diverged_run_ends_with_one_final_nan_report(tmp_path, monkeypatch, reported, epoch):
    """A diverged run is a result, not an error: its last report (one epoch after the last it made) holds the
    metric as NaN and marks itself final, so ASHA never stops it while it writes its result."""
    from mmlnb_dist.core.divergence import TrainingDiverged
    from mmlnb_dist.tuning import trial

    def target(cfg, env, report):
        raise TrainingDiverged("loss not finite")

    monkeypatch.setattr(trial, "resolve_target", lambda name: target)
    reports = []
    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path}"])
    result = trial.run_target("fusion", cfg, None, lambda e, m: reports.append((e, m)), [reported])
    assert result == {"diverged": "loss not finite"}
    assert len(reports) == 1 and reports[0][0] == epoch
    metrics = reports[0][1]
    assert math.isnan(metrics[METRIC]) and metrics["diverged"] == 1.0 and metrics[FINAL_REPORT] == 1.0


def test_a_trial_that_already_finished_reports_its_result_as_final_and_runs_nothing(tmp_path, monkeypatch):
    from ray import tune

    from mmlnb_dist.tuning.trial import PARAMS_FILE, RESULT_FILE, trial_main

    run_dir = tmp_path / "s-t0"
    run_dir.mkdir()
    (run_dir / RESULT_FILE).write_text(json.dumps({METRIC: 0.7, "last_epoch": 3, "run_dir": "x"}))
    reports = []
    monkeypatch.setattr(tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: "t0"))
    monkeypatch.setattr(tune, "report", reports.append)
    trial_main({}, _trial_ctx(tmp_path))
    assert reports == [{METRIC: 0.7, "last_epoch": 3.0, "epoch": 3.0, FINAL_REPORT: 1.0}]
    assert not (run_dir / PARAMS_FILE).exists()  # left untouched


def test_a_trial_on_gpus_gets_them_in_its_ray_train_worker_group(tmp_path, monkeypatch):
    import ray.train
    import ray.train.torch
    import ray.tune.integration.ray_train

    from mmlnb_dist.config import TuneConfig
    from mmlnb_dist.tuning.trial import fit_with_ray_train

    seen = {}

    class StandInTrainer:
        def __init__(self, loop, *, scaling_config, torch_config, **kwargs):
            seen.update(scaling=scaling_config, torch=torch_config)

        def fit(self):
            pass

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", StandInTrainer)
    monkeypatch.setattr(ray.tune.integration.ray_train, "TuneReportCallback", ray.train.UserCallback)
    for gpus, backend in ((0.5, "nccl"), (0.0, "gloo")):
        tune_cfg = TuneConfig.model_validate({"workers_per_trial": 2, "cpus_per_trial": 2, "gpus_per_trial": gpus})
        fit_with_ray_train({}, "fusion", tmp_path / "run", tune_cfg, tmp_path / "storage")
        assert seen["scaling"].use_gpu is (gpus > 0) and seen["torch"].backend == backend
        assert seen["scaling"].resources_per_worker == ({"CPU": 2, "GPU": gpus} if gpus else {"CPU": 2})


def test_an_errored_trials_good_epoch_is_drawn_as_a_failure():
    """search.png: an errored trial's last report (0.99 before it raised) is not a result: a cross on the bottom
    edge, and the best-so-far line does not reach it."""
    from mmlnb_dist.tuning.figure import search_figure

    rows = [_row("a", "OK", 0.6), _row("b", "ERROR", 0.99, completed=False), _row("c", "OK", 0.7)]
    trials = search_figure(rows, [], METRIC, "max").axes[0]
    failed = next(c for c in trials.collections if c.get_gid() == "trials:failed")
    assert [tuple(p) for p in failed.get_offsets().tolist()] == [(1, 0.6)]
    line = next(li for li in trials.lines if li.get_gid() == "best_so_far")
    assert list(line.get_ydata()) == [0.6, 0.6, 0.7]
    star = search_figure(rows, [], METRIC, "max", best="c").axes[0]
    assert [tuple(p) for c in star.collections if c.get_gid() == "best_trial" for p in c.get_offsets().tolist()] \
        == [(2, 0.7)]


def test_a_second_sigterm_ends_the_search_as_terminated():
    """The second SIGTERM stops at once as a termination (the CLI's exit for SIGTERM), not as a Ctrl-C."""
    import threading
    import signal

    from support.tune_signals import install_tune_like_handler

    from mmlnb_dist.core.signals import Terminated
    from mmlnb_dist.tuning.stop import GracefulSearchStop

    with pytest.raises(Terminated):
        with GracefulSearchStop():
            install_tune_like_handler([])
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
