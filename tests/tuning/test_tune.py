"""Ray Tune on the CPU against a real local Ray instance, with the real fusion recipe (made tiny).

- 4 trials, each in a fresh Ray Train TorchTrainer, ASHA on val/loss: at least one stopped early, one MLflow
  parent run with 4 child runs, the best config written, the frozen-feature cache computed once.
- A search whose driver's process group is SIGKILLed while a trial runs (after another finished) resumes with
  `tune.resume=true`: the finished trial is not run again, the interrupted one goes on from its checkpoint, no Ray
  process is left behind.
- Every shipped space gives valid configs over its whole range; a space that does not fails before Ray starts.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from mmlnb_dist.config import load_config

from support.fusion import make_shards
from support.tune_signals import assert_interrupted

ROOT = Path(__file__).resolve().parents[2]
CPU_DEMO = ROOT / "launch" / "profiles" / "cpu-demo.yaml"


def _overrides(shards: Path, out: Path, extra=()):
    return [f"data.shards={shards}", f"run.output_dir={out}", "tracking.backends=[mlflow]",
            "data.loader.num_workers=0", "data.loader.image_size=32", "train.epochs=3",
            "tune.metric=val/loss", "tune.mode=min", "tune.num_cpus=2", *extra]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("tune"), n=90, size=48)


def _range_ends(spec):
    """[(which end, value)] of one space entry: both ends of a numeric range (randint's high is exclusive),
    every value of a choice or grid."""
    if "choice" in spec or "grid" in spec:
        return [(f"choice {v!r}", v) for v in spec.get("choice") or spec.get("grid")]
    kind, (lo, hi, *_) = next((k, v) for k, v in spec.items() if k in ("uniform", "loguniform", "quniform",
                                                                            "randint"))
    return [("low", lo), ("high", hi - 1 if kind == "randint" else hi)]


def _typical(spec):
    """A value inside the range: the midpoint of a numeric range, the first choice."""
    ends = _range_ends(spec)
    if "choice" in spec or "grid" in spec:
        return ends[0][1]
    lo, hi = ends[0][1], ends[1][1]
    return (lo + hi) // 2 if isinstance(lo, int) and isinstance(hi, int) else (lo + hi) / 2


def _trial_config(base, space, sampled):
    """The config a trial would run with these values: the trial's own code path, then the config validation."""
    from mmlnb_dist.config import config_from_dict
    from mmlnb_dist.tuning.trial import trial_config

    ctx = {"base": base, "space": space, "name": "check", "trials_dir": "/tmp/trials", "cache_dir": "/tmp/cache",
           "uri": None, "parent_run_id": None}
    return config_from_dict(trial_config(sampled, ctx, "t0")["cfg"], f"sampled {sampled}")


@pytest.mark.parametrize("profile", sorted(p.name for p in (ROOT / "launch" / "profiles").glob("*.yaml")))
def test_space_files_load_and_give_valid_configs(profile):
    """Every shipped space over its whole range: each end of each range and each choice, alone and in pairs with
    every end of every other key (the rest at their midpoints), gives a valid trial config on every profile."""
    from itertools import combinations

    from mmlnb_dist.tuning.space import epochs_of, load_space, to_tune_space

    base = load_config(ROOT / "launch" / "profiles" / profile).model_dump(mode="json")
    paths = sorted((ROOT / "tune" / "spaces").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"curriculum", "optimisation", "lora", "joint"}
    for path in paths:
        space = load_space(path)
        to_tune_space(space, "random", base["train"]["epochs"])
        typical = {k: _typical(v) for k, v in space.items()}
        checked = 0
        for pair in combinations(list(space) + [None], 2):  # None: a key alone
            keys = [k for k in pair if k is not None]
            options = [_range_ends(space[k]) for k in keys]
            for ends in ([(a, b) for a in options[0] for b in options[1]] if len(keys) == 2 else
                         [(a,) for a in options[0]]):
                sampled = {**typical, **{k: v for k, (_, v) in zip(keys, ends, strict=True)}}
                _trial_config(base, space, {k: epochs_of(space[k], v, base["train"]["epochs"])  # as Ray samples
                                            for k, v in sampled.items()})
                checked += 1
        assert checked >= 2 * len(space), path


def test_space_with_a_bad_range_end_is_refused_before_ray_starts(tmp_path):
    """A range whose high (or low) end gives an invalid config fails at search start, naming key and end."""
    import ray

    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.tuning.driver import run_search

    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[stdout]"])
    cases = {
        "high": ("fusion.curriculum.start: {uniform: [0.2, 1.5]}", r"fusion\.curriculum\.start.*high end 1\.5"),
        "low": ("train.lr: {uniform: [-1.0e-3, 1.0e-2]}", r"train\.lr.*low end -0\.001"),
        "choice": ("vlm.lora.dropout: {choice: [0.0, 1.0]}", r"vlm\.lora\.dropout.*choice 1\.0"),
        "scaled": ("fusion.curriculum.ramp_start: {uniform: [0.1, 0.9], scale: epochs}",
                   r"fusion\.curriculum\.ramp_start.*high end 0\.9"),
    }
    for name, (line, message) in cases.items():
        space = tmp_path / f"{name}.yaml"
        space.write_text(f"params:\n  {line}\n")
        with pytest.raises(ConfigError, match=message):
            run_search(cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"name": name})}), space)
        assert not ray.is_initialized(), name
        assert not (tmp_path / "runs" / "tune" / name / "search.json").exists(), name


def test_the_phases_note_comes_from_the_run_not_from_a_searchs_check(shards, tmp_path, caplog, capsys):
    """`tune ... train.epochs=3` on cpu-demo (phases at epochs 0, 3, 6) printed "phases start at epoch 6 >=
    train.epochs 3; later phases never run" before the search, whose space rescales every trial's phases. The
    note now comes from a run that will actually skip phases, when it starts."""
    import logging

    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe
    from mmlnb_dist.tuning.checks import check_recipe

    cfg = load_config(CPU_DEMO, _overrides(shards, tmp_path, ["tracking.backends=[stdout]", "train.epochs=1"]))
    with caplog.at_level(logging.INFO, logger="mmlnb_dist"):
        check_recipe(cfg)
    assert "never run" not in caplog.text
    run(FusionRecipe, cfg)  # (the run sets up the package's console handler: its lines go to stderr)
    err = capsys.readouterr().err
    assert ("fusion.curriculum.phases[1] (start_epoch 3), fusion.curriculum.phases[2] (start_epoch 6) start at or "
            "after train.epochs=1") in err and "never run" in err


def test_a_trial_that_left_checkpoints_resumes_from_them(tmp_path):
    """A trial started again (a killed search resumed, or Tune's retry) must not start fresh on top of its own
    checkpoints: the recipe refuses that ('already holds checkpoints'), so the trial config asks to resume."""
    from mmlnb_dist.config import config_from_dict
    from mmlnb_dist.tuning.trial import trial_config

    base = load_config(CPU_DEMO).model_dump(mode="json")
    ctx = {"base": base, "space": {}, "name": "s", "trials_dir": str(tmp_path), "cache_dir": str(tmp_path / "c"),
           "uri": None, "parent_run_id": None}
    assert config_from_dict(trial_config({}, ctx, "t0")["cfg"]).run.resume is False  # a first attempt
    (tmp_path / "s-t0" / "checkpoints" / "epoch-0000").mkdir(parents=True)
    again = config_from_dict(trial_config({}, ctx, "t0")["cfg"])
    assert again.run.resume is True and again.run.dir == tmp_path / "s-t0"
    assert config_from_dict(trial_config({}, ctx, "t1")["cfg"]).run.resume is False  # another trial


def test_a_trial_folder_holding_other_values_is_set_aside_not_resumed(tmp_path):
    """After a hard kill Tune may restore its searcher without a trial it had started and create a trial with the
    same id but new values (seen in the kill drill with the random searcher): that trial must not resume or report
    the lost trial's work. Equal values: the same trial, kept."""
    from mmlnb_dist.tuning.trial import set_aside_other_trials_folder, trial_config

    space = {"train.lr": {"loguniform": [1.0e-3, 3.0e-3]}}
    ctx = {"base": load_config(CPU_DEMO).model_dump(mode="json"), "space": space, "name": "s",
           "trials_dir": str(tmp_path), "cache_dir": str(tmp_path / "c"), "uri": None, "parent_run_id": None}
    folder = tmp_path / "s-t0"
    (folder / "checkpoints" / "epoch-0000").mkdir(parents=True)
    (folder / "trial_params.json").write_text(json.dumps({"train.lr": 0.0025248065166868323}))
    assert set_aside_other_trials_folder(folder, {"train.lr": 0.0025248065166868323}) is None
    assert trial_config({"train.lr": 0.0025248065166868323}, ctx, "t0")["cfg"]["run"]["resume"] is True

    moved = set_aside_other_trials_folder(folder, {"train.lr": 0.001065942652366538})
    assert moved == tmp_path / "s-t0.lost-1" and (moved / "checkpoints" / "epoch-0000").is_dir()
    assert not folder.exists()
    assert trial_config({"train.lr": 0.001065942652366538}, ctx, "t0")["cfg"]["run"]["resume"] is False


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
    # a good and a hopeless learning rate, twice: ASHA must stop the hopeless ones at the first rung. Two epochs
    # (max_t 2): the rung at epoch 1 and a last epoch that must finish are all the assertions need; a third epoch
    # only added a second rung that no assertion reads, and an epoch to each trial that goes on.
    space.write_text("params:\n  train.lr: {grid: [3.0e-3, 1.0e-7]}\n")
    cfg = load_config(CPU_DEMO, _overrides(shards, tmp_path / "runs", [
        "train.epochs=2", "tune.searcher=grid", "tune.num_samples=2", "tune.grace_period=1", "tune.reduction_factor=2",
        "tune.use_ray_train=true", "tune.worker_pool=false"]))  # a TorchTrainer of one worker for each trial
    assert cfg.tune.train_poll_interval_s == 0.2  # the profile's: stopped trials really stop within an epoch
    assert not ray.is_initialized()
    summary = run_search(cfg, space)  # the driver starts Ray, so the poll interval reaches Ray Train
    assert not ray.is_initialized()
    print(json.dumps(summary, indent=1, default=str))  # timings belong to benchmarks/tune_overhead.py
    assert summary["trials"] == 4 and summary["errored"] == 0
    assert summary["stopped_early"] >= 1
    # every trial gives its cache counts, the ones stopped before writing their result file too (their last report)
    with open(Path(summary["experiment_dir"]) / "trials.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and sum(r["completed"] == "False" for r in rows) == summary["stopped_early"]
    # a trial that reached its last epoch finished (test split, export, result file): ASHA's stop at max_t used to
    # kill it while it did (with a fast controller poll, every trial of this search)
    assert all(r["completed"] == "True" for r in rows if r["iterations"] == "2"), rows
    for r in rows:  # rank 0 of each TorchTrainer logs the trial's full tables to its folder (a stopped trial's
        text = (Path(r["run_dir"]) / "trial.log").read_text()  # workers may still reach its final tables)
        assert "recipe] epoch 0 " in text and ("val split, best checkpoint" in text or r["completed"] != "True"), r
    assert sum(r["iterations"] == "2" for r in rows) >= 1  # ASHA lets the first trial at each rung go on
    assert all(r["cache/hits"] != "" and r["cache/misses"] != "" for r in rows), rows
    # MLflow: one parent, four children
    client = mlflow.MlflowClient(f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}")
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["stage"] == "tune"
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 4
    assert all(c.data.metrics.get("val/loss") is not None for c in children)
    # the search as a picture (tuning.figure), beside trials.csv and in the parent run
    assert Path(summary["figure"]) == Path(summary["experiment_dir"]) / "search.png"
    assert {"search/trials.csv", "search/search.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id,
                                                                                                "search")}
    # the best config is a ready-to-use full config
    best = load_config(summary["best_config"])
    assert set(summary["best_params"]) == {"train.lr"}
    assert best.train.lr == pytest.approx(summary["best_params"]["train.lr"])
    assert best.train.epochs == 2 and best.data.shards == Path(shards)
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


def _killed_search_cmd(shards, out, *extra):
    """Two two-epoch trials, each in a Ray Train TorchTrainer of its own (one trial at a time on 2 CPUs)."""
    return [sys.executable, "-m", "mmlnb_dist.cli", "tune", "--config", str(CPU_DEMO),
            "--space", str(out / "space.yaml"),
            *_overrides(shards, out / "runs", ["tune.use_ray_train=true", "tune.worker_pool=false",
                                               "tune.scheduler=fifo", "tune.searcher=grid", "tune.num_samples=1",
                                               "tune.name=killed", "train.epochs=2"]),
            *extra]


def _trial_states(trials: Path):
    """(finished, running) trial folders: finished ones hold trial_result.json; a running one is in its Ray Train
    worker, past its first epoch (a complete checkpoint tag: saved under a temporary name, then renamed), with
    no result yet."""
    from mmlnb_dist.core.checkpoint import list_tags
    from mmlnb_dist.tuning.trial import PG_FILE, RESULT_FILE

    dirs = [d for d in trials.iterdir() if d.is_dir()] if trials.is_dir() else []
    finished = [d for d in dirs if (d / RESULT_FILE).is_file()]
    running = [d for d in dirs if (d / PG_FILE).is_file() and list_tags(d / "checkpoints")
               and not (d / RESULT_FILE).is_file()]
    return finished, running


def _processes_naming(text: str):
    """{pid: command line} of the live processes whose command line or environment contains `text`: the
    driver's RAY_TMPDIR reaches every process it starts (raylet, GCS, workers, which rename themselves
    `ray::IDLE` and the like), and the session folder under it is on the command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (text in cmd or text in environ) and state != "Z":
            found[int(entry.name)] = cmd
    return found


def _session_members(sid) -> list:
    """Live pids of session `sid` (the driver was started as a session leader). Ray's raylet puts every worker
    in a process group of its own inside that session, so killing the driver's process group alone leaves the
    running trial's worker training (checked: it finished the trial seconds after the driver had died)."""
    if sid is None:
        return []
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:  # fields after the name: state, ppid, pgrp, session
            members.append(int(entry.name))
    return members


def _kill_session(sid) -> None:
    """SIGKILL every process of the driver's session at once: driver, trial, Ray Train workers, raylet, GCS
    (again while any is left: the raylet may have forked a worker during the sweep)."""
    for _ in range(5):
        members = _session_members(sid)
        if not members:
            return
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _wait_for_no_processes(sid, ray_tmp: Path, deadline_s: float = 120.0) -> None:
    """Wait until the killed session and every Ray process of this test's Ray folder are gone; survivors after
    the deadline are killed (by pid) and fail the test, naming them."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and (_session_members(sid) or _processes_naming(str(ray_tmp))):
        time.sleep(0.2)
    left = {**_processes_naming(str(ray_tmp)), **{pid: "session member" for pid in _session_members(sid)}}
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"processes left behind: {left}"


@contextlib.contextmanager
def _ray_temp_dir():
    """A short private RAY_TMPDIR (Ray's socket paths must stay under 107 characters): whatever Ray process
    still names it at the end is killed by pid, then the folder is removed."""
    path = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    try:
        yield path
    finally:
        for pid in _processes_naming(str(path)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_killed_search_resumes_without_rerunning_finished_trials(shards, tmp_path):
    """SIGKILL the driver's whole process group while a Ray Train trial runs, then `tune.resume=true`."""
    # a grid: a restored searcher gives a trial it lost the same values again, so that trial resumes its
    # checkpoint (random values are new values: that case is test_a_trial_folder_holding_other_values_...)
    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {grid: [3.0e-3, 1.0e-3]}\n")
    exp = tmp_path / "runs" / "tune" / "killed"
    trials = exp / "trials"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "RAY_ADDRESS")}
    env["PYTHONUNBUFFERED"] = "1"
    # Tune saves its experiment state at most every 10 s: a huge period makes the kill always land after an
    # unsaved trial completion (the worst case), so Tune's own state still lists the finished trial as running.
    env["TUNE_GLOBAL_CHECKPOINT_S"] = "100000"
    log = tmp_path / "first.log"
    with _ray_temp_dir() as ray_tmp:
        env["RAY_TMPDIR"] = str(ray_tmp)  # this test's Ray processes are the ones naming this folder
        with open(log, "wb") as out:
            proc = subprocess.Popen(_killed_search_cmd(shards, tmp_path), cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            finished, running = [], []
            while proc.poll() is None and not (finished and running):
                finished, running = _trial_states(trials)
                time.sleep(0.2)  # polling the trial folders; the files decide when to kill
            assert finished and running, (f"the driver exited (code {proc.poll()}) before a trial finished and "
                                          f"the next one started; log tail:\n{log.read_text()[-4000:]}")
            _kill_session(proc.pid)  # no chance to save anything: driver, trial, workers, raylet, GCS
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                _kill_session(proc.pid)
                proc.wait()
        _wait_for_no_processes(proc.pid, ray_tmp)
        finished, running = _trial_states(trials)
        assert len(finished) == 1 and len(running) == 1, (finished, running)
        stamps = {d.name: ((d / "trial_result.json").stat().st_mtime_ns, (d / "trial_result.json").stat().st_ino)
                  for d in finished}
        interrupted = running[0].name
        first_epoch = running[0] / "checkpoints" / "epoch-0000"
        first_epoch_inode = first_epoch.stat().st_ino

        res = subprocess.run(_killed_search_cmd(shards, tmp_path, "tune.resume=true"), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=540, check=False, start_new_session=True)
        _wait_for_no_processes(None, ray_tmp)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    # the trials' lines reach the driver's console with Ray's "(pid=...)" prefix; into a pipe or a log file that
    # prefix carried colour codes (ESC[36m ... ESC[0m on every line); DeepSpeed's print when it adopts Ray's process
    # group, and Ray's notices to itself, are nothing a user acts on
    console = res.stdout + res.stderr
    assert "(RayTrainWorker pid=" in res.stderr and "\x1b[" not in console, res.stderr[-2000:]
    assert "built successfully" not in console and "State API may be temporarily unavailable" not in console
    done = {d.name for d in trials.iterdir() if (d / "trial_result.json").is_file()}
    assert done == set(stamps) | {interrupted}
    for name, stamp in stamps.items():  # the finished trial was not run again
        path = trials / name / "trial_result.json"
        assert (path.stat().st_mtime_ns, path.stat().st_ino) == stamp, name
    # the interrupted trial went on from its epoch-0 checkpoint (a rerun from scratch saves that tag anew)
    assert first_epoch.stat().st_ino == first_epoch_inode
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["trials"] == 2 and summary["errored"] == 0, summary
    assert yaml.safe_load(Path(summary["best_config"]).read_text())["train"]["epochs"] == 2


@pytest.mark.slow
def test_a_sigterm_ends_a_search_as_interrupted_and_it_resumes(shards, tmp_path):
    """`kill PID` on a `tune` driver (Kubernetes, a scheduler, an operator): Ray's handler, set by `ray.init`,
    printed a C++ stack trace ("*** SIGTERM received at time=...") and aborted, exit 134. It now ends as every
    command does: "interrupted", exit 130, no Ray process left; `tune.resume=true` then finishes the search."""
    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {loguniform: [1.0e-3, 3.0e-3]}\n")
    trials = tmp_path / "runs" / "tune" / "resumable" / "trials"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "RAY_ADDRESS")}
    log = tmp_path / "first.log"
    with _ray_temp_dir() as ray_tmp:
        env["RAY_TMPDIR"] = str(ray_tmp)
        with open(log, "wb") as out:
            proc = subprocess.Popen(_tune_cmd(shards, tmp_path), cwd=ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while proc.poll() is None and not (trials.is_dir() and any(trials.iterdir())):
                time.sleep(0.2)  # the first trial's folder decides when to signal
            os.kill(proc.pid, signal.SIGTERM)  # the driver only, as `kill PID` does
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                _kill_session(proc.pid)
                proc.wait()
        _wait_for_no_processes(proc.pid, ray_tmp)
        console = log.read_text()
        assert code == 130, console[-3000:]
        assert "mmlnb-dist tune: interrupted: resume with tune.resume=true" in console
        assert "SIGTERM received at time" not in console and "best config:" not in console
        first = assert_interrupted(tmp_path / "runs", "resumable")
        res = subprocess.run(_tune_cmd(shards, tmp_path, "tune.resume=true"), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=540, check=False, start_new_session=True)
        _wait_for_no_processes(None, ray_tmp)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "tune" / "resumable" / "summary.json").read_text())
    assert summary["trials"] == 3 and summary["errored"] == 0 and summary.get("best_config"), summary
    assert summary["parent_run_id"] == first["parent_run_id"]
    assert not list(trials.glob("*.lost-*"))  # Tune's saved state knew every trial it had started
    import mlflow

    parent = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}").get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["best_trial_id"] == summary["best_trial_id"]


def test_starting_an_existing_search_again_is_a_clear_error(shards, tmp_path):
    (tmp_path / "runs" / "tune" / "resumable").mkdir(parents=True)
    (tmp_path / "runs" / "tune" / "resumable" / "search.json").write_text("{}")
    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {loguniform: [1.0e-3, 3.0e-3]}\n")
    res = subprocess.run(_tune_cmd(shards, tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "tune.resume=true" in res.stderr


def test_a_missing_shard_set_is_refused_before_ray_starts(tmp_path):
    """The trial recipe's own config checks run in the driver: before, every trial failed on its own (with
    retries) after Ray had started, and the search ended with all trials errored."""
    import ray

    from mmlnb_dist.data.shardset import ShardError
    from mmlnb_dist.tuning.driver import run_search

    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {grid: [3.0e-3]}\n")
    cfg = load_config(CPU_DEMO, _overrides(tmp_path / "no-shards", tmp_path / "runs", ["tune.scheduler=fifo"]))
    with pytest.raises(ShardError, match="data.shards: .*no-shards"):
        run_search(cfg, tmp_path / "space.yaml")
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("extra, needs", [
    # a TorchTrainer per trial: its trial process holds a CPU beside its 2 workers' (this hung, silently, forever)
    (["tune.worker_pool=false"], "3 CPU"),
    (["tune.cpus_per_trial=2"], "4 CPU"),  # kept groups: 2 ranks x 2 CPUs
])
def test_a_trial_that_could_never_be_placed_is_refused_before_ray_starts(shards, tmp_path, extra, needs):
    import ray

    from mmlnb_dist.tuning.driver import SearchError, run_search

    (tmp_path / "space.yaml").write_text("params:\n  train.lr: {grid: [3.0e-3]}\n")
    cfg = load_config(CPU_DEMO, _overrides(shards, tmp_path / "runs", [
        "tune.scheduler=fifo", "tune.workers_per_trial=2", *extra]))  # tune.num_cpus=2
    with pytest.raises(SearchError, match=f"needs {needs}.* has 2 CPU.*tune.num_cpus"):
        run_search(cfg, tmp_path / "space.yaml")
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()
