"""What a search leaves when it ends: `trials.csv`, `search.png`, `best.yaml`, `summary.json`, the MLflow parent
run's summary and, with `tune.register_best`, the best trial's registered model."""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any, Dict, Optional

from ..config import Config, config_from_dict, save_config
from ..config.tune import reporting_recipe, search_mode
from ..core.errors import ConfigError
from ..core.tracking.registry import metric_mode
from ..core.tracking.runs import ParentRun
from .figure import save_search_figure
from .results import cache_stats, finite, pick_best, write_trials_csv
from .space import apply_params

log = logging.getLogger(__name__)


def finish(cfg: Config, rows, dirs, uri, parent, space, wall: float, extra: Dict[str, Any],
           interrupted: bool = False) -> Dict[str, Any]:
    """Best config YAML, trials table, cache stats, parent-run logging, optional registration. An `interrupted`
    search (stopped by a signal, resumable) picks nothing: its table and figure are written, summary.json says
    `interrupted`, and its parent run ends KILLED."""
    errored = [r for r in rows if r["status"] == "ERROR"]
    summary: Dict[str, Any] = {**extra, "trials": len(rows), "errored": len(errored),
                               "diverged": sum(1 for r in rows if r["status"] == "DIVERGED"), "wall_s": round(wall, 1),
                               "experiment_dir": str(dirs["exp"]), "parent_run_id": parent.run_id if parent else None}
    summary["errored_trials"] = {str(r["trial_id"]): r.get("error") or "no error line" for r in errored}
    # OK without a result: ASHA stopped it, or (FIFO stops nothing; a stop cuts trials off) it did not finish
    cut = sum(1 for r in rows if not r["completed"] and r["status"] == "OK")
    by_scheduler = cfg.tune.scheduler == "asha" and not interrupted
    summary["stopped_early"] = cut if by_scheduler else 0
    if not by_scheduler and cut:
        summary["unfinished"] = cut  # a resume runs them again
    write_trials_csv(rows, dirs["exp"] / "trials.csv")
    best = None if interrupted else pick_best(rows, cfg.tune.metric, search_mode(cfg))
    if interrupted:
        summary["interrupted"] = True
    summary["figure"] = str(save_search_figure(rows, dict(space), cfg.tune.metric, search_mode(cfg),
                                               dirs["exp"] / "search.png", cfg.tune.name,
                                               best=best["trial_id"] if best else None))
    summary["cache"] = cache_stats(dirs["cache"], rows)
    if summary["stopped_early"] and cfg.tune.worker_groups and not cfg.tune.worker_pool:
        # Ray stops such a trial by ending its worker group, and that trial's controller logs it as an error
        log.info("%d trial(s) stopped early by the %s scheduler: any 'A worker health check failed' error Ray "
                 "logged for them is that stop, not a failure (errored trials: %d)", summary["stopped_early"],
                 cfg.tune.scheduler, len(errored))
    if best is not None:
        best_dict, applied = apply_params(cfg.model_dump(mode="json"), {k: best[k] for k in space if k in best},
                                          space)
        best_dict["tune"] = {**best_dict.get("tune", {}), "resume": False}
        # its own run folder: the base config's (runs/cpu-demo) held the profile's run, whose checkpoints refused it
        best_dict["run"] = {**best_dict.get("run", {}), "name": f"{cfg.tune.name}-best", "resume": False}
        as_searched = copy.deepcopy(best_dict)
        trains_the_searched_recipe(cfg, best_dict)
        try:
            best_cfg = config_from_dict(best_dict, "best trial")
        except ConfigError as err:  # a base setting only its own train.recipe takes: best.yaml as the base names it
            log.warning("best.yaml keeps train.recipe=%s: with train.recipe=%s the config is refused: %s",
                        cfg.train.recipe, cfg.tune.recipe, err)
            best_cfg = config_from_dict(as_searched, "best trial")
        save_config(best_cfg, dirs["best"])
        summary.update({"best_config": str(dirs["best"]), "best_params": applied,
                        "best_metric": finite(best[cfg.tune.metric]), "best_trial_id": best["trial_id"],
                        "best_run_dir": best["run_dir"]})
    if parent is not None:
        log_parent(cfg, parent, summary, dirs, errored, status="KILLED" if interrupted else "FINISHED")
    if cfg.tune.register_best and cfg.tracking.register_name and summary.get("best_run_dir"):
        summary["registered"] = register_best(cfg, parent, summary)
    (dirs["exp"] / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def trains_the_searched_recipe(cfg: Config, best_dict: Dict[str, Any]) -> None:
    """Make the best config's `train.recipe` the recipe the trials ran (`tune.recipe`, a table recipe), so `mmlnb-dist
    train --config best.yaml` trains it: a CLIP or VLM search of cpu-demo kept its `train.recipe: fusion`, and that
    command trained the fusion classifier. A `train.best_metric` the recipe does not have becomes the search's
    metric. A pipeline's (its `train.recipe` is its last stage's) and a recipe class outside the table's stay."""
    from ..recipes import RECIPES

    spec = RECIPES.get(cfg.tune.recipe)
    if spec is None:
        return
    train = best_dict.setdefault("train", {})
    train["recipe"] = spec.name
    if train.get("best_metric") not in spec.metrics:
        train["best_metric"] = cfg.tune.metric.removeprefix("val/")


def log_parent(cfg: Config, parent: ParentRun, summary: Dict[str, Any], dirs: Dict[str, Path], errored,
               status: str = "FINISHED") -> None:
    """The search's summary on its parent run. The best values are tags (`best.<key>`) and the metric
    `best/<metric>` at the step of the trial count, not params: MLflow refuses a param another value, so a resumed
    search whose best changed could not say so (and its parent run stayed RUNNING)."""
    metrics = {"tune/wall_s": summary["wall_s"], "tune/trials": summary["trials"], "tune/errored": summary["errored"],
               "tune/diverged": summary["diverged"], "tune/stopped_early": summary["stopped_early"],
               "tune/cache_files": summary["cache"]["cache_files"]}
    if isinstance(summary.get("best_metric"), (int, float)):
        metrics[f"best/{cfg.tune.metric}"] = float(summary["best_metric"])
    tags: Dict[str, Optional[str]] = {}
    if summary.get("best_trial_id") is not None:
        tags["best_trial_id"] = str(summary["best_trial_id"])
        tags.update({f"best.{k}": str(v) for k, v in (summary.get("best_params") or {}).items()})
    # None: a resume that reran the errored trials successfully drops the earlier run's tag
    tags["errored_trials"] = ", ".join(str(r["trial_id"]) for r in errored) or None
    artifacts = [dirs["exp"] / "trials.csv", Path(summary["figure"])]
    artifacts += [Path(summary["best_config"])] if summary.get("best_config") else []
    parent.finish(metrics=metrics, artifacts=artifacts, tags=tags, step=int(summary["trials"]), status=status)


def register_best(cfg: Config, parent: Optional[ParentRun], summary: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Register the best trial's model through the recipe-table entry of the recipe its trials ran (`tune.recipe`, a
    pipeline's `train.recipe`; `train.recipe` alone named fusion for a CLIP or VLM search of cpu-demo); with the
    tracking server down (no parent run, or lost now) the search still ends with its summary, and says how to
    register later."""
    from ..core.tracking.registry import register_or_explain
    from ..recipes import load_class

    spec = reporting_recipe(cfg)
    if spec is None or not spec.register:
        log.warning("the %s recipe registers no model; tune.register_best ignored",
                    spec.name if spec is not None else cfg.tune.recipe)
        return None
    best_dir = Path(summary["best_run_dir"]).resolve()
    run_id = parent.child_with_tag("run_dir", str(best_dir)) if parent is not None else None
    metric = cfg.tracking.register_metric or cfg.tune.metric
    mode = (cfg.tracking.register_mode or metric_mode(metric, spec.lower_is_better)) if cfg.tracking.register_metric \
        else search_mode(cfg)
    register = load_class(spec.register)
    return register_or_explain(run_id, parent is not None, cfg.tracking.register_name, best_dir,
                               lambda run: register(run, cfg.tracking.register_name, alias=cfg.tracking.register_alias,
                                                    tracking_uri=parent.uri, metric=metric, mode=mode))
