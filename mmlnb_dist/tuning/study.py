"""An ablation study's runs as Ray Tune trials: `mmlnb-dist ablate ... tune.max_concurrent=N` (N > 1).

    study = run_study(cfg, rows, seeds, train_jobs=train_as_trials)     # what `ablate` does

`studies.run_study` prepares everything shared (the descriptions, the MLflow parent run) in the driver, then hands
the row x seed runs here: each one that is not up to date becomes one trial of a grid over run names, at most
`tune.max_concurrent` at a time, with `tune.cpus_per_trial` / `tune.gpus_per_trial` each. A trial trains its run
exactly as the in-process path does (`studies.train_row`: the same stage record, so a rerun skips it either way).
Concurrent trials cannot share one SQLite file (one writer): they log through a local MLflow server on it.
"""
from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any, Dict

from ..config import Config, config_from_dict
from ..core.config import absolute_paths
from ..core.distributed import forget_launcher
from ..core.logging import command_log, setup_logging
from ..core.signals import sigterm_handler_kept
from ..pipeline import is_up_to_date, stage_file
from ..studies import RowJob, study_folder, train_row
from ..studies.table import first_line
from .checks import SearchError, check_resources
from .stop import GracefulSearchStop

log = logging.getLogger(__name__)


def _stage_record(job: RowJob) -> Dict[str, Any]:
    try:
        return json.loads(stage_file(Path(job.cfg.run.dir)).read_text())
    except (OSError, ValueError):
        return {}


def _up_to_date(job: RowJob) -> bool:
    return is_up_to_date(_stage_record(job), Path(job.cfg.run.dir), job.fingerprint)


def row_trial(params: Dict[str, Any], jobs: Dict[str, Dict[str, Any]]) -> None:
    """The Tune trainable: one run of the study (its config travels as JSON), reported once when done."""
    from ray import tune

    forget_launcher()  # a trial is rank 0 of 1
    spec = jobs[params["run"]]
    cfg = config_from_dict(spec["cfg"], f"study run {params['run']}")
    # The driver's study.log is another process's file: a trial logs to <study>/<run>.log, the full tables included
    # (Ray forwards the console to the driver, which shows the study's own table). Not inside the run folder: the
    # stage that trains it refuses a folder it did not make.
    setup_logging(0)
    with command_log(Path(cfg.run.dir).parent / f"{Path(cfg.run.dir).name}.log"):
        info = train_row(RowJob(spec["row"], spec["seed"], cfg, spec["fingerprint"]))
    tune.report({k: float(v) for k, v in info.get("metrics", {}).items() if isinstance(v, (int, float))})


def check_rows_fit(cfg: Config) -> None:
    """Refuse, before the study trains or describes anything, rows that no local Ray instance could place: a row's
    trial runs one rank in its own process with `tune.cpus_per_trial` / `tune.gpus_per_trial`, and Tune waited for
    more than the instance has forever, after the VLM stages had run (`checks.check_resources`). A trial of several
    ranks (`tune.workers_per_trial`, `tune.use_ray_train`: a search's worker group) or GPUs is refused: the row ran on
    one rank and one GPU without a word."""
    t = cfg.tune
    asked = ([f"tune.workers_per_trial={t.workers_per_trial}"] if t.workers_per_trial > 1 else []) + \
        (["tune.use_ray_train=true"] if t.use_ray_train else []) + \
        ([f"tune.gpus_per_trial={t.gpus_per_trial:g}"] if t.gpus_per_trial > 1 else [])
    if asked:
        raise SearchError(f"{', '.join(asked)}: ablate runs each row as a Ray Tune trial of one rank in the trial's "
                          f"own process (tune.max_concurrent={t.max_concurrent} rows at a time), which uses one GPU at "
                          f"most: leave tune.workers_per_trial at 1, tune.use_ray_train unset and tune.gpus_per_trial "
                          f"at most 1")
    check_resources(cfg, ranks=1)


def train_as_trials(cfg: Config, jobs: Dict[str, RowJob]) -> Dict[str, Dict[str, Any]]:
    """`studies.TrainJobs`: runs that are up to date are read from their stage records; the others are trials."""
    import ray
    from ray import tune

    from ..core.tracking.server import start_server, stop_server

    infos = {name: {**_stage_record(job), "skipped": True} for name, job in jobs.items() if _up_to_date(job)}
    pending = {name: job for name, job in jobs.items() if name not in infos}
    if not pending:
        return infos
    check_rows_fit(cfg)
    study_dir = study_folder(cfg)
    server = None
    uri = next(iter(pending.values())).cfg.tracking.uri
    if uri and uri.startswith("sqlite:") and cfg.tune.max_concurrent > 1:
        server, server_uri = start_server(uri, cfg.run.output_dir / "mlartifacts",
                                          log_path=study_dir / "mlflow_server.log")
        for job in pending.values():  # logged through the server; the run folders record the store (`uri`)
            job.cfg.tracking.server = server_uri
    # a trial runs in a folder of its own: relative paths are made absolute here, where they were written
    specs = {name: {"cfg": absolute_paths(job.cfg, Path.cwd()).model_dump(mode="json"), "row": job.row,
                    "seed": job.seed, "fingerprint": job.fingerprint} for name, job in pending.items()}
    started = False
    if not ray.is_initialized():
        address = cfg.tune.address or os.environ.get("RAY_ADDRESS")
        with sigterm_handler_kept():  # (Ray's own handler aborts with a stack trace)
            ray.init(address=address or "local", num_cpus=None if address else cfg.tune.num_cpus,
                     include_dashboard=False)
        started = True
    log.info("study %s: %d run(s) as Ray Tune trials, %d at a time", study_dir.name, len(pending),
             cfg.tune.max_concurrent)
    try:
        resources = {"CPU": cfg.tune.cpus_per_trial, "GPU": cfg.tune.gpus_per_trial}
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(row_trial, jobs=specs), resources),
            param_space={"run": tune.grid_search(sorted(pending))},
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=cfg.tune.max_concurrent),
            run_config=tune.RunConfig(name="trials", storage_path=str((study_dir / "tune").resolve()),
                                      failure_config=tune.FailureConfig(max_failures=cfg.tune.max_failures),
                                      verbose=0))  # the runs' lines and the study's table say it all
        with GracefulSearchStop() as stop:  # Tune's own Ctrl-C handler would return as if every run had ended
            grid = tuner.fit()
    finally:
        if started:
            ray.shutdown()
        if server is not None:
            stop_server(server)
    if stop.signal is not None:  # Tune stopped the trials and returned: the study is not done
        name = signal.Signals(stop.signal).name
        log.warning("study %s: %s received, stopped with its runs unfinished; the same command goes on (runs "
                    "already trained are skipped)", study_dir.name, name)
        raise KeyboardInterrupt(name)
    # As in-process (`studies.train_in_process`): a failed run is marked failed, the others still make the table
    failed = {r.config.get("run"): first_line(getattr(r.error, "cause", None) or r.error) for r in grid if r.error}
    for name, error in failed.items():  # (Ray's error text is a traceback; its cause is the trial's exception)
        log.error("study run %s failed: %s (its log: %s)", name, error, study_dir / f"{name}.log")
    for name, job in pending.items():
        infos[name] = {"failed": failed[name], "skipped": False} if name in failed \
            else {**_stage_record(job), "skipped": False}
    return infos
