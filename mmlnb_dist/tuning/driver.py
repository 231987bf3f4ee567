"""The search driver: `run_search(cfg)` (what `mmlnb-dist tune` calls).

Layout under `<tune.storage_path>/<tune.name>/` (the Tune experiment folder, which resume needs intact):
    trials/<name>-<trial_id>/   each trial's run folder (config.yaml, checkpoints, export, trial_result.json)
    cache/                      frozen-feature (and description) cache shared by all trials
    search.json                 MLflow parent run id (reused on resume), tracking URI, metric, space (kept by a resume)
    best.yaml                   the best trial's full config, ready for `mmlnb-dist train --config best.yaml`
    trials.csv                  one row per trial: params, final metrics, status
    worker_pool.txt             while trials run in kept worker groups: the name of their pool's Ray actor
    .lock, .lock.json           the driver's hold on the folder for the whole search (`core.runlock.FolderLock`)
    summary.json                the search's summary: counts, the best trial (none when `interrupted`), the cache

Other modules: `checks` (before anything is written), `algorithms` (searcher, scheduler), `stop` (SIGINT/SIGTERM
through Tune's graceful stop), `results` (the trials' rows, the best pick), `outcome` (what an ended search leaves).
"""
from __future__ import annotations

import json
import logging
import os
import time
import typing
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..config import Config
from ..config.tune import kept_metric, search_mode
from ..core.config import absolute_paths
from ..core.runlock import FolderInUseError, FolderLock, describe_holder, read_holder
from ..core.signals import sigterm_handler_kept
from ..core.tracking.runs import ParentRun
from .algorithms import scheduler, searcher
from .fit import leave_out_unfit_values
from .checks import (RESTORED_SETTINGS, SearchError, check_choice_values, check_outputs, check_recipe, check_resources,
                     check_resume_base, check_resume_goal, check_resume_space, check_search, check_space_is_read,
                     default_space, recorded_base, started_with, unreported_metric, warn_ignored_on_resume)
from .outcome import finish
from .ranges import trial_config_check
from .results import FINISHED, trial_rows
from .space import DISTRIBUTIONS, apply_params, load_space, resolve_space, to_tune_space
from .stop import GracefulSearchStop, SearchInterrupted
from .trial import trial_main

log = logging.getLogger(__name__)


def _dirs(cfg: Config) -> Dict[str, Path]:
    storage = (cfg.tune.storage_path or cfg.run.output_dir / "tune").resolve()
    exp = storage / cfg.tune.name
    return {"storage": storage, "exp": exp, "trials": exp / "trials",
            "cache": (cfg.tune.shared_cache_dir or exp / "cache").resolve(),
            "best": (cfg.tune.best_config or exp / "best.yaml").resolve()}


POOL_FILE = "worker_pool.txt"  # the name of the search's kept worker groups' actor (this driver's)


def _release_callback(trials_dir: Path, name: str):
    """A Tune callback that frees a stopped trial's Ray Train worker group.

    When Tune stops a trial (ASHA, or max_t reached) it kills the trial process while its TorchTrainer still
    holds the workers' placement group; Ray Train's own cleaner needs the state API (the dashboard), which a
    plain `ray.init(include_dashboard=False)` lacks, so the next trial waited forever for a CPU.
    """
    from ray import tune

    class ReleaseWorkerGroups(tune.Callback):
        def _release(self, trial) -> None:
            from ray._raylet import PlacementGroupID
            from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

            from .trial import PG_FILE

            path = trials_dir / f"{name}-{trial.trial_id}" / PG_FILE
            if not path.is_file():
                return
            pg_hex = path.read_text().strip()
            try:
                if placement_group_table().get(pg_hex, {}).get("state") not in (None, "REMOVED"):
                    remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg_hex))))
            except Exception as err:  # noqa: BLE001 - best effort; Ray may already have removed it
                log.warning("could not release the worker group of trial %s: %s", trial.trial_id, err)

        def _hand_back(self, trial, broken: bool) -> None:
            """Take a kept worker group back from a trial whose process died before it could. The pool is found by
            the name the driver wrote: Tune pickles this callback with the search, and a resumed search has a new
            pool (an actor handle would not survive the pickle)."""
            import ray

            path = trials_dir.parent / POOL_FILE
            if not path.is_file():
                return
            try:
                ray.get_actor(path.read_text().strip()).release.remote(trial.trial_id, broken=broken)
            except ValueError:  # no such actor: not this driver's pool
                return

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._release(trial)
            self._hand_back(trial, broken=False)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._release(trial)
            self._hand_back(trial, broken=True)

    return ReleaseWorkerGroups()


def _init_ray(cfg: Config) -> bool:
    """Join the configured cluster (tune.address, else RAY_ADDRESS) or start a local instance.
    Returns True when this call started Ray (so the driver shuts it down again)."""
    import ray

    if ray.is_initialized():
        return False
    address = cfg.tune.address or os.environ.get("RAY_ADDRESS")
    # The job's runtime environment reaches every process of the search, Ray Train's controllers included.
    # Ray Train replaces `print` in its workers by a logger call that no stdout redirection reaches, so a library
    # print the package sends to its log file (DeepSpeed's "... built successfully") reached the console; the
    # package itself prints nothing in a trial (its lines are log records).
    runtime_env = {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": str(cfg.tune.train_poll_interval_s),
                                "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}}
    with sigterm_handler_kept():  # a SIGTERM still ends the search as interrupted, not in Ray's abort
        if address:
            ray.init(address=address, include_dashboard=False, runtime_env=runtime_env)
        else:
            # "local": always a fresh instance. A bare ray.init() joins the cluster recorded in
            # <ray tmp>/ray_current_cluster, which outlives a killed `ray start` head: a resumed search would
            # attach to a dead cluster. The instance's raylet and GCS share this process's fate (Ray's kernel
            # fate-sharing), so a killed driver takes them along instead of leaving them running.
            ray.init(address="local", num_cpus=cfg.tune.num_cpus, include_dashboard=False, runtime_env=runtime_env)
    return True


def _tracking(cfg: Config, dirs: Dict[str, Path]) -> Tuple[Optional[str], Optional[str], Any]:
    """(the store trials log to, the address of the local server they log through or None, its process). SQLite
    has one writer: concurrent trials go through a local server instead, which ends with the search."""
    from ..core.tracking.server import default_tracking_uri, start_server

    if "mlflow" not in cfg.tracking.backends:
        return None, None, None
    uri = default_tracking_uri(cfg.tracking, cfg.run.output_dir)
    if uri.startswith("sqlite:") and cfg.tune.max_concurrent > 1:
        proc, server_uri = start_server(uri, cfg.run.output_dir / "mlartifacts",
                                        log_path=dirs["exp"] / "mlflow_server.log")
        log.info("%d concurrent trials log through a local MLflow server %s (backed by %s)",
                 cfg.tune.max_concurrent, server_uri, uri)
        return uri, server_uri, proc
    return uri, None, None


def _parent_run(cfg: Config, uri: str, state: Dict[str, Any], space_path: Path) -> Optional[ParentRun]:
    """Create (or, on resume, reuse) the MLflow parent run of the search; None if tracking is unavailable."""
    from ..core.tracking.environment import environment_tags

    tags = {"stage": "tune", "tune.name": cfg.tune.name, "tune.space": str(space_path), **environment_tags()}
    params = {f"tune.{k}": v for k, v in cfg.tune.model_dump(mode="json").items()}
    params.update({"tune.space_file": str(space_path), "tune.mode": search_mode(cfg)})
    return ParentRun.open(cfg.tracking, uri, cfg.run.output_dir, f"{cfg.tune.name}-search", tags=tags,
                          params=params, artifacts=[space_path], resume_id=state.get("parent_run_id"))


def run_search(cfg: Config, space_path: Optional[Path] = None) -> Dict[str, Any]:
    """Run (or resume) the configured search; returns a summary with the best trial and its config path."""
    space_path = resolve_space(space_path or cfg.tune.space or default_space(cfg.tune.recipe))
    # Trials run in folders of their own (on a cluster, on other machines): relative paths would point elsewhere
    cfg = absolute_paths(cfg, Path.cwd())
    kept = kept_metric(cfg)  # each trial keeps the checkpoint best on the metric the search ranks it by
    if kept is not None and cfg.tune.resume:  # unless its search started with another: its finished trials kept that
        kept = started_with(_dirs(cfg)["exp"], "train.best_metric") or kept
    if kept is not None and kept != cfg.train.best_metric:
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"best_metric": kept})})
    base = cfg.model_dump(mode="json")
    # every range end gives a valid config that the trial's recipe accepts, checked before Ray starts
    space = load_space(space_path, base, check=trial_config_check(cfg))
    space = absolute_values(space, base, Path.cwd())  # a trial runs in a folder of its own
    space = leave_out_unfit_values(space, base, cfg.tune.recipe, space_path)  # e.g. `sum` on unequal widths
    check_space_is_read(space, cfg.tune.recipe, space_path)
    check_choice_values(space, space_path)
    check_recipe(cfg)
    _check_path_values(space, base, space_path)
    check_resources(cfg)
    max_t = check_search(cfg, space, space_path)
    # Built before anything is written: a setting they refuse must not leave a search folder or a parent run
    param_space = to_tune_space(space, cfg.tune.searcher, cfg.train.epochs)
    search_alg, trial_scheduler = searcher(cfg), scheduler(cfg, max_t)
    plan = {"param_space": param_space, "search_alg": search_alg, "scheduler": trial_scheduler}
    dirs = _dirs(cfg)
    check_outputs(dirs)
    exp_dir = dirs["exp"]
    if cfg.tune.resume and not (exp_dir / "search.json").is_file():
        raise SearchError(f"nothing to resume at {exp_dir}; drop tune.resume=true to start this search")
    check_resume_goal(cfg, exp_dir, search_mode(cfg))
    check_resume_space(cfg, exp_dir, space, space_path)
    check_resume_base(cfg, exp_dir, base)
    lock = _hold(exp_dir, cfg.tune.name)
    try:
        return _run_held(cfg, base, space, space_path, dirs, plan)
    finally:
        lock.release()


def absolute_values(params: Dict[str, Dict[str, Any]], base: Dict[str, Any], root: Path) -> Dict[str, Any]:
    """The space with its choice and grid values of path fields made absolute against `root`, as `absolute_paths`
    makes the base config's (`base`: that config as a dict): a trial runs in its own folder, where a relative
    `data.shards: {grid: [shards/a, shards/b]}` named nothing and every trial failed. Other values stay as written."""
    from ..config import config_from_dict
    from ..core.errors import ConfigError

    def absolute(key: str, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            got = absolute_paths(config_from_dict(apply_params(base, {key: value}, params)[0], "space"), root)
        except ConfigError:  # `check_ranges` names it
            return value
        got = got.model_dump(mode="json")
        for part in key.split("."):
            got = got[int(part)] if isinstance(got, list) else got[part]
        return got if isinstance(got, str) and got != value and Path(got).is_absolute() else value

    out = {}
    for key, spec in params.items():
        kind = next(k for k in spec if k in DISTRIBUTIONS)
        # a whole config is built per value: only for a field that may name a path (not a Literal, not a number)
        paths = kind in ("choice", "grid") and _may_name_a_path(key)
        out[key] = {**spec, kind: [absolute(key, v) for v in spec[kind]]} if paths else spec
    return out


def _may_name_a_path(key: str) -> bool:
    """Whether the field `key` names can hold a path: a `Path` or a str (a `PathText` is one) in its annotation;
    an unknown key: yes (`check_ranges` names it)."""
    from ..core.config import field_annotation
    from ..core.errors import ConfigError

    def holds(annotation: Any) -> bool:
        if annotation is str or (isinstance(annotation, type) and issubclass(annotation, Path)):
            return True
        return any(holds(a) for a in typing.get_args(annotation))

    try:
        return holds(field_annotation(Config, key))
    except ConfigError:
        return True


def _check_path_values(space: Dict[str, Dict[str, Any]], base: Dict[str, Any], source: Any) -> None:
    """The trial recipe's own checks (`check_recipe`) on every path a choice or grid gives other than the base
    config's (`data.shards: {grid: [shards/a, shards/missing]}`), before Ray starts: a missing shard set failed its
    trials only, after the search folder and its parent run were made."""
    from ..config import config_from_dict
    from ..core.errors import UserError

    for key, spec in space.items():
        kind = next(k for k in spec if k in DISTRIBUTIONS)
        held: Any = base
        for part in key.split("."):
            held = held[int(part)] if isinstance(held, list) else (held or {}).get(part)
        for value in spec[kind] if kind in ("choice", "grid") else ():
            if isinstance(value, str) and Path(value).is_absolute() and value != held:
                try:
                    check_recipe(config_from_dict(apply_params(base, {key: value}, space)[0], str(source)))
                except UserError as err:
                    raise SearchError(f"{source}: '{key}' {kind} value {value}: {err}") from None


def _hold(exp_dir: Path, name: str) -> FolderLock:
    """Take the search folder for this driver, for the whole search: two drivers of one search (the same tune.name,
    started together) both passed the "already exists" check before either wrote search.json, then ran two
    experiments in one folder (or one died creating the tracking database the other was creating)."""
    try:
        return FolderLock(exp_dir, "mmlnb-dist tune").acquire()
    except FolderInUseError:
        raise SearchError(f"search '{name}' at {exp_dir} is in use by {describe_holder(read_holder(exp_dir))}: wait "
                          f"for it to finish, or start this search under another tune.name") from None


def _run_held(cfg: Config, base: Dict[str, Any], space: Dict[str, Any], space_path: Path, dirs: Dict[str, Path],
              plan: Dict[str, Any]) -> Dict[str, Any]:
    """The search, in its folder, which this driver holds."""
    import ray
    from ray import tune

    exp_dir = dirs["exp"]
    resuming = cfg.tune.resume
    if not resuming and (exp_dir / "search.json").is_file():
        raise SearchError(f"search '{cfg.tune.name}' already exists at {exp_dir}; resume it with "
                          f"tune.resume=true or pick another tune.name")
    exp_dir.mkdir(parents=True, exist_ok=True)
    dirs["trials"].mkdir(parents=True, exist_ok=True)
    dirs["cache"].mkdir(parents=True, exist_ok=True)
    state_path = exp_dir / "search.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    # Tune restores its stored searcher (sample count included) when it saved one; else the config's runs. A
    # restored search recorded before these settings were has no start value: none is recorded for it (this
    # command's would be named by a later resume's warning as what the search was started with)
    restoring = resuming and tune.Tuner.can_restore(str(exp_dir))
    kept = {k: state[k] if restoring else getattr(cfg.tune, k) for k in RESTORED_SETTINGS
            if not restoring or k in state}
    if restoring:
        warn_ignored_on_resume(cfg, kept)

    store, server_uri, server = _tracking(cfg, dirs)
    uri = server_uri or store  # where the driver logs (the parent run) while the search runs
    parent = _parent_run(cfg, uri, state, space_path) if uri else None
    state.update({"parent_run_id": parent.run_id if parent else None, "space": str(space_path), "space_params": space,
                  "tracking_uri": uri,
                  "started": state.get("started", time.time()), "metric": cfg.tune.metric, "mode": search_mode(cfg),
                  **({} if restoring else {"base": recorded_base(base)}), **kept})  # a resume keeps the start's
    state_path.write_text(json.dumps(state, indent=1))

    ctx = {"base": base, "space": space, "name": cfg.tune.name, "trials_dir": str(dirs["trials"]),
           "uri": store, "server": server_uri, "parent_run_id": parent.run_id if parent else None,
           "recipe": cfg.tune.recipe,
           "tune": cfg.tune.model_dump(mode="json"), "storage": str(dirs["storage"]), "cache_dir": str(dirs["cache"])}
    started_ray = _init_ray(cfg)
    t0 = time.time()
    pool = None
    (exp_dir / POOL_FILE).unlink(missing_ok=True)  # an earlier driver's
    try:
        if cfg.tune.worker_groups and cfg.tune.worker_pool:
            from .pool import start_pool

            ctx["pool"] = f"mmlnb-worker-pool-{cfg.tune.name}-{os.getpid()}-{time.time_ns()}"
            pool = start_pool(ctx["pool"], cfg.tune.max_concurrent, cfg.tune)
            (exp_dir / POOL_FILE).write_text(ctx["pool"])
            # The trial process only relays reports: the pool's groups hold the CPUs and GPUs. A bundle cannot be
            # empty, so it asks for one byte of Ray's memory resource.
            res = {"CPU": 0, "memory": 1}
        elif cfg.tune.worker_groups:
            # With Ray Train the trial process only drives its TorchTrainer, but it still takes one CPU: with a
            # token 0.01 CPU the next trial's worker group timed out waiting for resources on a 2-CPU machine.
            res = {"CPU": 1}
        else:
            res = {"CPU": cfg.tune.cpus_per_trial * cfg.tune.workers_per_trial,
                   "GPU": cfg.tune.gpus_per_trial * cfg.tune.workers_per_trial}
        trainable = tune.with_resources(tune.with_parameters(trial_main, ctx=ctx), res)
        if restoring:
            tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=plan["param_space"],
                tune_config=tune.TuneConfig(
                    metric=cfg.tune.metric, mode=search_mode(cfg), num_samples=cfg.tune.num_samples,
                    search_alg=plan["search_alg"],
                    scheduler=plan["scheduler"], reuse_actors=cfg.tune.reuse_trial_processes),
                run_config=tune.RunConfig(
                    name=cfg.tune.name, storage_path=str(dirs["storage"]),
                    failure_config=tune.FailureConfig(max_failures=cfg.tune.max_failures),
                    callbacks=[_release_callback(dirs["trials"], cfg.tune.name)],
                    verbose=1),
            )
        with GracefulSearchStop() as stop:
            grid = tuner.fit()
        # the whole search's time: a resume's own (0.1 s for a finished search) replaced the earlier runs' in
        # summary.json and the parent run's tune/wall_s
        wall = float(state.get("wall_s") or 0.0) + time.time() - t0
        state_path.write_text(json.dumps({**state, "wall_s": wall}, indent=1))
        rows = trial_rows(grid, dirs, cfg)
        # Tune returns normally after its graceful stop: the signal, or trials it never finished, say it stopped
        interrupted = stop.signal is not None or any(r["status"] not in FINISHED for r in rows)
        # kept worker groups: how many were built (one per concurrent trial, plus one per failed trial)
        extra = {"worker_groups_built": ray.get(pool.groups_built.remote())} if pool is not None else {}
        summary = finish(cfg, rows, dirs, uri, parent, space, wall, extra, interrupted=interrupted)
    except KeyboardInterrupt as err:  # stopped at once: Tune's state is the one it saved last, still resumable
        if parent is not None:
            parent.finish(status="KILLED")
        raise SearchInterrupted() from err
    except Exception as err:  # Ray's or the summary's: the parent run ends FAILED, not RUNNING for good
        if parent is not None:
            parent.finish(status="FAILED")
        failed = unreported_metric(cfg, err, exp_dir) if isinstance(err, tune.TuneError) else None
        if failed is None:
            raise
        raise failed from None
    finally:
        if pool is not None:
            ray.get(pool.shutdown.remote())
            ray.kill(pool)
        if started_ray:
            ray.shutdown()
        if server is not None:
            from ..core.tracking.server import stop_server

            stop_server(server)
    if summary.get("interrupted"):
        raise SearchInterrupted(summary)
    return summary
