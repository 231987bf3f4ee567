"""Mutation audit of a search's graceful stop (`tuning.stop`) and of an ablation study run as Ray Tune trials
(`tuning.study`): the stop leaves the process as it found it (another thread, a user's environment, an earlier
SIGUSR1 handler), and a study hands Tune only the runs that are not up to date, reports a failed run by name, and
leaves a Ray instance it did not start running. Tune's Tuner is a stand-in; no Ray instance is started."""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.tuning.stop import QUIET_TUNE_SIGINT, GracefulSearchStop


def _signal_self(sig):
    signal.pthread_kill(threading.get_ident(), sig)


def test_outside_the_main_thread_the_stop_changes_nothing():
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    env = os.environ.get(QUIET_TUNE_SIGINT)
    seen = []

    def body():
        with GracefulSearchStop() as stop:
            seen.append((stop.signal, os.environ.get(QUIET_TUNE_SIGINT)))

    worker = threading.Thread(target=body)
    worker.start()
    worker.join()
    assert seen == [(None, env)]
    assert {s: signal.getsignal(s) for s in before} == before


@pytest.mark.parametrize("value", ["0", None])
def test_the_users_own_tune_sigint_setting_is_put_back(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(QUIET_TUNE_SIGINT, raising=False)
    else:
        monkeypatch.setenv(QUIET_TUNE_SIGINT, value)
    with GracefulSearchStop():
        assert os.environ[QUIET_TUNE_SIGINT] == "1"  # Tune must not take Ctrl-C itself
    assert os.environ.get(QUIET_TUNE_SIGINT) == value


def test_a_signal_before_tunes_loop_stops_at_once_even_with_an_earlier_sigusr1_handler():
    """A SIGUSR1 handler set before the search (not Tune's) is no graceful stop of the search: the signal stops at
    once and that handler is neither called nor left replaced."""
    called = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: called.append(signum))
    try:
        with pytest.raises(KeyboardInterrupt):
            with GracefulSearchStop() as stop:
                _signal_self(signal.SIGINT)
        assert stop.signal is None and called == []
        assert signal.getsignal(signal.SIGUSR1) is not previous and callable(signal.getsignal(signal.SIGUSR1))
    finally:
        signal.signal(signal.SIGUSR1, previous)


def _job(tmp_path, name, uri=None, done=False):
    from mmlnb_dist.pipeline import run_stage
    from mmlnb_dist.studies import RowJob

    cfg = load_config(None, [f"run.output_dir={tmp_path}/runs/study-study", f"run.name={name}",
                             "tracking.backends=[stdout]", *([f"tracking.uri={uri}"] if uri else [])])
    job = RowJob(name.split("-")[0], 0, cfg, "f" * 16)
    if done:
        def work(resume):
            Path(cfg.run.dir).mkdir(parents=True)
            return {"metrics": {"test/micro_f1": 0.5}}

        run_stage(job.name, Path(cfg.run.dir), job.fingerprint, work, lambda _: None)
    return job


def _study(tmp_path, monkeypatch, jobs, results=None, initialized=True):
    """`train_as_trials` with a stand-in Tuner (returning `results`, default: one fine result per run)."""
    import ray
    from ray import tune

    from mmlnb_dist.core.tracking import server
    from mmlnb_dist.tuning.study import train_as_trials

    seen = {"tuners": 0, "shutdown": 0, "servers": []}

    class Tuner:
        def __init__(self, trainable, param_space, tune_config, run_config):
            seen["tuners"] += 1
            seen.update(param_space=param_space, storage=run_config.storage_path)

        def fit(self):
            runs = seen["param_space"]["run"]["grid_search"]
            return results if results is not None else \
                [SimpleNamespace(config={"run": r}, error=None, metrics={}) for r in runs]

    def with_parameters(fn, jobs):
        seen["specs"] = jobs
        return fn

    monkeypatch.setattr(ray, "is_initialized", lambda: initialized)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.setdefault("init", kw))
    monkeypatch.setattr(ray, "shutdown", lambda: seen.update(shutdown=seen["shutdown"] + 1))
    monkeypatch.setattr(tune, "Tuner", Tuner)
    monkeypatch.setattr(tune, "with_parameters", with_parameters)
    monkeypatch.setattr(tune, "with_resources", lambda fn, res: fn)
    monkeypatch.setattr(server, "start_server", lambda uri, *a, **kw: seen["servers"].append(uri) or ("p", "http://s"))
    monkeypatch.setattr(server, "stop_server", lambda proc: None)
    cfg = load_config(None, [f"run.output_dir={tmp_path}/runs", "run.name=study", "tune.max_concurrent=2",
                             "tracking.backends=[stdout]"])
    return train_as_trials(cfg, {j.name: j for j in jobs}), seen


def test_runs_up_to_date_are_read_back_and_only_the_others_become_trials(tmp_path, monkeypatch):
    infos, seen = _study(tmp_path, monkeypatch, [_job(tmp_path, "a-seed0", done=True), _job(tmp_path, "b-seed0")])
    assert seen["param_space"]["run"]["grid_search"] == ["b-seed0"]
    assert infos["a-seed0"]["skipped"] is True and infos["a-seed0"]["metrics"] == {"test/micro_f1": 0.5}
    assert infos["b-seed0"]["skipped"] is False


def test_a_study_whose_runs_are_all_up_to_date_starts_no_tune(tmp_path, monkeypatch):
    infos, seen = _study(tmp_path, monkeypatch, [_job(tmp_path, "a-seed0", done=True)], initialized=False)
    assert list(infos) == ["a-seed0"] and seen["tuners"] == 0 and "init" not in seen


def test_a_failed_run_is_marked_failed_and_the_others_kept(tmp_path, monkeypatch):
    """As in-process (`studies.train_in_process`): the table of the other runs is still written, the failed row
    says why (its error's first line) and the command exits non-zero after it; a failed trial raised here, so the
    study ended with no table at all."""
    results = [SimpleNamespace(config={"run": "a-seed0"}, error=None, metrics={}),
               SimpleNamespace(config={"run": "b-seed0"}, error=RuntimeError("out of shards\n  traceback..."),
                               metrics={})]
    infos, _ = _study(tmp_path, monkeypatch, [_job(tmp_path, "a-seed0"), _job(tmp_path, "b-seed0")], results)
    assert infos["b-seed0"] == {"failed": "RuntimeError: out of shards", "skipped": False}
    assert not infos["a-seed0"].get("failed") and infos["a-seed0"]["skipped"] is False


def test_a_trials_error_is_shown_by_its_cause(tmp_path, monkeypatch):
    """Ray wraps a trial's exception (RayTaskError, whose text is a traceback): the row shows the cause."""
    wrapped = RuntimeError("ray::row_trial() (pid=1, ip=127.0.0.1)\n  File ...")
    wrapped.cause = ValueError("no test split")
    results = [SimpleNamespace(config={"run": "a-seed0"}, error=wrapped, metrics={})]
    infos, _ = _study(tmp_path, monkeypatch, [_job(tmp_path, "a-seed0")], results)
    assert infos["a-seed0"]["failed"] == "ValueError: no test split"


def test_only_a_sqlite_store_gets_a_server_and_only_a_started_ray_is_shut_down(tmp_path, monkeypatch):
    _, seen = _study(tmp_path, monkeypatch, [_job(tmp_path, "a-seed0", uri="http://127.0.0.1:5999")])
    assert seen["servers"] == [] and seen["shutdown"] == 0 and "init" not in seen  # someone else's Ray instance
    _, seen = _study(tmp_path, monkeypatch, [_job(tmp_path, "b-seed0", uri=f"sqlite:///{tmp_path}/m.db")],
                     initialized=False)
    assert seen["servers"] == [f"sqlite:///{tmp_path}/m.db"] and seen["shutdown"] == 1 and "init" in seen
    # the run logs through the server; its folder's config.yaml keeps the store (the server ends with the study)
    tracking = seen["specs"]["b-seed0"]["cfg"]["tracking"]
    assert (tracking["uri"], tracking["server"]) == (f"sqlite:///{tmp_path}/m.db", "http://s")


def test_a_trial_is_handed_absolute_paths(tmp_path, monkeypatch):
    """Ray runs each trial in a folder of its own: a relative run folder would land there."""
    monkeypatch.chdir(tmp_path)
    job = _job(Path("rel"), "a-seed0")
    assert not Path(job.cfg.run.output_dir).is_absolute()
    _, seen = _study(Path("rel"), monkeypatch, [job])
    spec = seen["specs"]["a-seed0"]
    assert spec["cfg"]["run"]["output_dir"] == str(tmp_path / "rel" / "runs" / "study-study")
    assert (spec["row"], spec["seed"], spec["fingerprint"]) == ("a", 0, "f" * 16)
    assert Path(seen["storage"]) == tmp_path / "rel" / "runs" / "study-study" / "tune"


def test_a_trial_drops_the_launchers_rank_and_reports_its_numeric_metrics(tmp_path, monkeypatch):
    from ray import tune

    from mmlnb_dist.tuning import study

    seen = {}

    def train_row(job):
        seen["env"] = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR")}
        seen["job"] = (job.row, job.seed, job.fingerprint, job.cfg.run.name)
        return {"metrics": {"test/micro_f1": 1, "val/loss": 0.25, "note": "text"}}

    monkeypatch.setattr(study, "train_row", train_row)
    monkeypatch.setattr(study, "setup_logging", lambda rank: None)
    monkeypatch.setattr(tune, "report", lambda metrics: seen.setdefault("report", metrics))
    for key, value in (("RANK", "3"), ("WORLD_SIZE", "4"), ("MASTER_ADDR", "10.1.2.3")):
        monkeypatch.setenv(key, value)
    cfg = load_config(None, [f"run.output_dir={tmp_path}/study", "run.name=a-seed0", "tracking.backends=[stdout]"])
    jobs = {"a-seed0": {"cfg": cfg.model_dump(mode="json"), "row": "a", "seed": 0, "fingerprint": "fp"}}
    study.row_trial({"run": "a-seed0"}, jobs)
    assert seen["env"] == {"RANK": None, "WORLD_SIZE": None, "MASTER_ADDR": None}
    assert seen["job"] == ("a", 0, "fp", "a-seed0")
    assert seen["report"] == {"test/micro_f1": 1.0, "val/loss": 0.25}
    assert (tmp_path / "study" / "a-seed0.log").is_file()  # the trial's own log, beside its run
