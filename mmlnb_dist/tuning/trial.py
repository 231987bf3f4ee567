"""What one Tune trial runs.

A trial is a plain function (Tune's function API). Where its recipe runs:
- in the trial process (one rank: `tune.use_ray_train` unset with one worker per trial, or false);
- in a worker group kept for the whole search (`pool`, `tune.worker_pool`, the default for several ranks): the
  trial process relays rank 0's reports to Tune;
- in a fresh Ray Train `TorchTrainer` (`tune.worker_pool=false`): every trial gets new processes; workers report
  through `ray.train.report` and `TuneReportCallback` forwards rank 0's metrics to Tune, where ASHA reads them.

What runs is resolved through the recipe table: a recipe name (`fusion`) runs that recipe through
`core.recipe.run`; `vlm-fusion` runs the pipeline's stages (fine-tune, describe, train); `package.module:Name`
runs a recipe class (or a `run(cfg, env, report)` function) outside the table.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..config.tune import PIPELINES
from ..core.distributed import forget_launcher
from ..core.files import replace_text
from ..core.logging import command_log, setup_logging
from ..core.recipe import FINAL_REPORT

log = logging.getLogger(__name__)

RESULT_FILE = "trial_result.json"
PARAMS_FILE = "trial_params.json"
LAST_REPORT = "last_report"  # the result file's record of the trial's last report (`_write_result`)
REPORTS = "reports"  # the result file's count of the trial's reports (`_write_result`)
PG_FILE = "train_placement_group.txt"
WORKER_FILE = "ray_worker_rank{rank}.json"  # where each Ray Train rank of the trial ran (node, pid)
TRIAL_LOG = "trial.log"
"""A trial's full log in its folder (rank 0): per-epoch tables and its final metric tables, which stay off the
driver's console (Ray forwards every trial's console there; the search's own table sums them up)."""
PIPELINE_RECIPES = {"vlm-fusion": ("vlm", "fusion")}
"""The recipes each pipeline runs: the config sections its trials read (`checks.check_space_is_read`)."""
PIPELINE_SPACES = {"vlm-fusion": "joint"}
"""The shipped space each pipeline's search uses without `--space`."""


def resolve_target(name: str) -> Callable[..., Dict[str, Any]]:
    """`run(cfg, env, report) -> result` for a recipe of the table, a pipeline, or `package.module:Name`."""
    from ..core.recipe import run
    from ..recipes import RECIPES, load_class

    if name in PIPELINES:
        target = load_class(PIPELINES[name])
    elif name in RECIPES:
        target = load_class(RECIPES[name].target)
    else:
        target = load_class(name)
    if isinstance(target, type):
        return lambda cfg, env=None, report=None: run(target, cfg, env, report)
    return target


def clean_metrics(metrics: Dict[str, Any]) -> Dict[str, float]:
    """Only finite-or-NaN numbers go to Tune (strings and paths would break searchers)."""
    out = {}
    for k, v in (metrics or {}).items():
        if isinstance(v, bool):
            v = float(v)
        if isinstance(v, (int, float)) or hasattr(v, "item"):
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                continue
    return out


def _write_result(run_dir: Path, result: Dict[str, Any], seconds: float, last_epoch: Optional[int],
                  last_report: Optional[Dict[str, float]] = None, reports: Optional[int] = None) -> None:
    """The trial's 'finished' mark: written whole (`core.files.replace_text`), so it exists only complete.
    `last_report`: the metrics the trial last reported, which a run of it again (`trial_main`) reports: the search
    ranked it by them, while a recipe's result may hold its kept (best) epoch's validation. `reports`: how many
    reports it made (`trials.csv`'s iterations): Tune counts 1 for a finished trial it restored after a kill."""
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in result.items()}
    payload["trial_seconds"] = seconds
    payload["pid"] = os.getpid()  # which process ran it: shows `tune.reuse_actors` at work
    payload["last_epoch"] = last_epoch
    if last_report is not None:
        payload[LAST_REPORT] = last_report
    if reports is not None:
        payload[REPORTS] = reports
    replace_text(run_dir / RESULT_FILE, json.dumps(payload, indent=1, default=str))


def diverged_report(cfg) -> Dict[str, float]:
    """The last report of a trial that diverged: its metric as NaN, marked final (it is never stopped)."""
    return {cfg.tune.metric: float("nan"), "diverged": 1.0, FINAL_REPORT: 1.0}


def run_target(recipe: str, cfg, env, report: Callable[[int, Dict[str, Any]], None],
               last_epoch: List[Optional[int]]) -> Dict[str, Any]:
    """The trial's recipe run; a run that diverges (`core.divergence`: every rank stops at the same step) is a
    result of the search, not an error: Tune would retry an error `tune.max_failures` times, and the retry would
    resume from the trial's last checkpoint and diverge at the same step. Its last report holds the metric as NaN
    (the best-trial choice and the searchers skip it) and the result says why (`diverged`)."""
    from ..core.divergence import TrainingDiverged

    try:
        return resolve_target(recipe)(cfg, env, report) or {}
    except TrainingDiverged as err:
        log.warning("trial %s diverged: %s", cfg.run.name, err)
        reported = last_epoch[0]  # the last epoch the run reported (`report` keeps it there)
        report(reported + 1 if reported is not None else 0, diverged_report(cfg))
        return {"diverged": str(err)}


def marked_final(recipe: str, cfg, epoch: int, metrics: Dict[str, float]) -> Dict[str, float]:
    """`metrics` with `FINAL_REPORT` set for a recipe of the table that reports once per epoch: 1.0 at this trial's
    own last epoch. The scheduler would otherwise judge "last" by the base config's `train.epochs`, which a space
    may vary. Recipes that count their own reports (vlm) mark them themselves; other targets are left as they are."""
    from ..recipes import RECIPES

    spec = RECIPES.get(recipe)
    if spec is None or spec.reports or FINAL_REPORT in metrics:
        return metrics
    return {**metrics, FINAL_REPORT: float(epoch >= cfg.train.epochs - 1)}


def run_rank(cfg_dict: Dict[str, Any], recipe: str, env, report: Callable[[int, Dict[str, float]], None],
             node_id: str) -> None:
    """One rank of a trial's recipe, in a Ray Train worker or a kept worker group (`pool`): records where it ran,
    passes every epoch's numeric metrics to `report`, and on rank 0 writes the trial's result file."""
    from ..config import config_from_dict

    cfg = config_from_dict(cfg_dict, "tune trial")
    cfg.run.dir.mkdir(parents=True, exist_ok=True)
    # On a cluster this shows how tune.placement_strategy spread the trial's ranks over the nodes.
    (cfg.run.dir / WORKER_FILE.format(rank=env.rank)).write_text(json.dumps(
        {"rank": env.rank, "node_id": node_id, "pid": os.getpid()}))
    t0 = time.time()
    last_epoch, last_report, reports = [None], [None], [0]

    def report_epoch(epoch: int, metrics: Dict[str, Any]) -> None:
        last_epoch[0], last_report[0] = epoch, clean_metrics(metrics)
        reports[0] += 1
        report(epoch, marked_final(recipe, cfg, epoch, last_report[0]))

    setup_logging(env.rank)
    with command_log(cfg.run.dir / TRIAL_LOG, env.rank):
        result = run_target(recipe, cfg, env, report_epoch, last_epoch)
    if env.rank == 0:
        _write_result(cfg.run.dir, result, time.time() - t0, last_epoch[0], last_report[0], reports[0])


def _worker_loop(config: Dict[str, Any]) -> None:
    """Runs in each Ray Train worker: one DeepSpeed rank of the recipe."""
    import ray.train
    import ray.train.torch
    import ray.util

    from ..core.distributed import DistEnv

    ctx = ray.train.get_context()
    env = DistEnv(rank=ctx.get_world_rank(), world_size=ctx.get_world_size(),
                  local_rank=ctx.get_local_rank(), device=ray.train.torch.get_device())
    pg = ray.util.get_current_placement_group()
    if env.rank == 0 and pg is not None:
        # The driver removes this group if Tune stops the trial (ASHA) before Ray Train can (see driver).
        run_dir = Path(config["cfg"]["run"]["output_dir"]) / config["cfg"]["run"]["name"]
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / PG_FILE).write_text(pg.id.hex())

    def report(epoch: int, metrics: Dict[str, float]) -> None:
        # every rank must call ray.train.report equally often (else training hangs): the recipe calls
        # `report` on all ranks, and only rank 0's values are forwarded to Tune.
        ray.train.report({**metrics, "epoch": float(epoch)})

    run_rank(config["cfg"], config["recipe"], env, report, node_id=ray.get_runtime_context().get_node_id())


def fit_with_ray_train(cfg_dict: Dict[str, Any], recipe: str, run_dir: Path, tune_cfg, storage: Path) -> None:
    """Start a fresh TorchTrainer for this trial and wait for it."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    use_gpu = tune_cfg.gpus_per_trial > 0
    resources = {"CPU": tune_cfg.cpus_per_trial}
    if use_gpu:
        resources["GPU"] = tune_cfg.gpus_per_trial
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"cfg": cfg_dict, "recipe": recipe},
        scaling_config=ScalingConfig(num_workers=tune_cfg.workers_per_trial, use_gpu=use_gpu,
                                     resources_per_worker=resources,
                                     placement_strategy=tune_cfg.placement_strategy),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name=run_dir.name, storage_path=str(storage / "_train"),
                             callbacks=[TuneReportCallback()]),
    )
    trainer.fit()


TRIAL_SET_KEYS = ("run.name", "run.output_dir", "run.resume", "run.cache_dir", "tracking.uri", "tracking.server",
                  "tracking.parent_run_id", "tracking.register_name", "train.evaluate_test")
"""The config keys `trial_config` sets in every trial, whatever the space samples (a space may not search them)."""


def trial_config(params: Dict[str, Any], ctx: Dict[str, Any], trial_id: str) -> Dict[str, Any]:
    """The trial's full config: the base config, the sampled values, its own run folder, the shared cache and
    the search's tracking (a child run of the search's parent run; only the driver registers models).
    A trial whose folder already holds checkpoints was started before (a killed search, resumed; or a retry
    after a failure): it resumes from its newest checkpoint (a fresh start there is refused by the recipe)."""
    from .space import apply_params

    cfg_dict, applied = apply_params(ctx["base"], params, ctx["space"])
    run = cfg_dict.setdefault("run", {})
    name = f"{ctx['name']}-{trial_id}"
    checkpoints = Path(ctx["trials_dir"]) / name / "checkpoints"  # every recipe's <run dir>/checkpoints
    earlier_attempt = checkpoints.is_dir() and any(checkpoints.iterdir())
    run.update({"name": name, "output_dir": ctx["trials_dir"], "resume": earlier_attempt,
                "cache_dir": ctx["cache_dir"]})
    tracking = cfg_dict.setdefault("tracking", {})
    # the store in `uri` (what the trial's folder records), the search's server, if any, in `server` (logged through)
    tracking.update({"uri": ctx["uri"], "server": ctx.get("server"), "parent_run_id": ctx["parent_run_id"],
                     "register_name": None})
    # Trials stop at validation: test numbers beside every configuration invite choosing one by them.
    cfg_dict.setdefault("train", {})["evaluate_test"] = False
    return {"cfg": cfg_dict, "applied": applied}


def trial_main(params: Dict[str, Any], ctx: Dict[str, Any]) -> None:
    """The Tune trainable: config for this trial -> recipe (in a TorchTrainer) -> reports -> result file."""
    from ray import tune

    from ..config import TuneConfig, config_from_dict

    trial_id = tune.get_context().get_trial_id()
    built = trial_config(params, ctx, trial_id)
    if set_aside_other_trials_folder(Path(ctx["trials_dir"]) / f"{ctx['name']}-{trial_id}", built["applied"]):
        built = trial_config(params, ctx, trial_id)  # its checkpoints were another trial's: start fresh
    cfg = config_from_dict(built["cfg"], f"trial {trial_id} ({built['applied']})")
    run_dir = cfg.run.dir.resolve()
    done = read_trial_result(run_dir)
    if done is not None:
        # Tune saves its experiment state at most every 10 s: a driver killed soon after this trial finished
        # restores it as unfinished and starts it again. Its result file says it is done: report that result
        # once (Tune needs a last result for the best-trial choice) and leave the folder untouched.
        log.info("trial %s already finished (%s); reporting its result instead of running it again",
                 trial_id, run_dir / RESULT_FILE)
        last = done.get("last_epoch")
        # a diverged trial's last report as `run_target` made it: without the metric Tune refuses it
        metrics = {**clean_metrics(done), **done.get(LAST_REPORT, {}),
                   **(diverged_report(cfg) if done.get("diverged") else {})}
        tune.report({**metrics, "epoch": float(last if last is not None else -1), FINAL_REPORT: 1.0})
        return
    if cfg.run.resume:
        log.info("trial %s ran before and left checkpoints in %s: resuming from the newest", trial_id, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / PARAMS_FILE).write_text(json.dumps(built["applied"], indent=1, default=str))
    tune_cfg = TuneConfig.model_validate(ctx["tune"])
    t0 = time.time()
    if tune_cfg.worker_groups and ctx.get("pool"):
        from .pool import run_in_pool

        run_in_pool(ctx["pool"], trial_id, cfg.model_dump(mode="json"), ctx["recipe"],
                    lambda epoch, metrics: tune.report({**metrics, "epoch": float(epoch)}))
    elif tune_cfg.worker_groups:
        fit_with_ray_train(cfg.model_dump(mode="json"), ctx["recipe"], run_dir, tune_cfg, Path(ctx["storage"]))
    else:
        forget_launcher()  # rank 0 of 1 (a reused process's group serves it: core.distributed)
        last_epoch, last_report, reports = [None], [None], [0]

        def report(epoch: int, metrics: Dict[str, Any]) -> None:
            last_epoch[0], last_report[0] = epoch, clean_metrics(metrics)
            reports[0] += 1
            tune.report({**marked_final(ctx["recipe"], cfg, epoch, last_report[0]), "epoch": float(epoch)})

        setup_logging(0)
        with command_log(run_dir / TRIAL_LOG):
            result = run_target(ctx["recipe"], cfg, None, report, last_epoch)
        _write_result(run_dir, result, time.time() - t0, last_epoch[0], last_report[0], reports[0])


def set_aside_other_trials_folder(run_dir: Path, applied: Dict[str, Any]) -> Optional[Path]:
    """Move the trial folder aside when it holds another trial's work; returns where it went (None: kept).

    Folders are named by trial id. Tune saves its experiment state at most every 10 s, so after a hard kill it
    may not know a trial it had started: the restored searcher then creates a trial with the same id and newly
    sampled values (seen with the random searcher), and that trial must neither resume the lost trial's
    checkpoints nor report its result. Nothing is deleted: the lost trial's folder becomes `<name>.lost-<n>`."""
    params_path = run_dir / PARAMS_FILE
    if not params_path.is_file():
        return None
    stored = json.loads(params_path.read_text())
    if stored == json.loads(json.dumps(applied, default=str)):
        return None
    n = 1
    while run_dir.with_name(f"{run_dir.name}.lost-{n}").exists():
        n += 1
    target = run_dir.with_name(f"{run_dir.name}.lost-{n}")
    run_dir.rename(target)
    log.warning("trial folder %s held another trial's work (values %s, now %s): Tune lost that trial's record "
                "(killed before it saved its state); moved to %s, starting this trial fresh",
                run_dir, stored, applied, target)
    return target


def read_trial_result(run_dir: Path) -> Optional[Dict[str, Any]]:
    path = Path(run_dir) / RESULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None
