"""Ray Tune searches over the training recipes."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, List, Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..core.config import Section
from ..core.errors import ConfigError
from ..core.sections import refuse_folder_path, refuse_glob_characters


class TuneConfig(Section):
    space: Optional[Path] = None
    """Search-space YAML: a file, or a shipped space's name (`curriculum`, `optimisation`, `lora`, `joint`, `clip`;
    `tune/spaces/*.yaml`); unset: the trial recipe's own (`curriculum` for fusion). `--space` sets it."""

    recipe: str = "fusion"
    """What one trial runs: a recipe of the recipe table (`fusion`, `clip`), the `vlm-fusion` pipeline (fine-tune
    the VLM, describe, train), or `package.module:Recipe` (a recipe class outside the table); unset: `train.recipe`
    (and an unset `metric`: `val/<train.best_metric>`)."""

    searcher: Literal["random", "grid", "optuna"] = "random"
    """Search algorithm: random sampling, grid (every `grid` value; `num_samples` repeats), Optuna TPE."""

    num_samples: int = Field(4, ge=1)
    """Trials to run (for grid: repeats of the whole grid)."""

    max_concurrent: int = Field(1, ge=1)
    """Trials running at the same time (bounded also by the cluster's free CPUs/GPUs)."""

    metric: str = "val/balanced_accuracy"
    """Reported metric that ASHA, the searcher and the best-trial choice optimise: `val/<name>` of a metric of the
    trials' recipe (the recipe table's metrics; a pipeline's: its `train.recipe`'s), checked before anything runs
    (`config validate` too); a recipe class outside the table (`package.module:Name`) may report any name."""

    mode: Optional[Literal["max", "min"]] = None
    """Whether `metric` is maximised or minimised; unset: the metric's own direction (`min` for a loss, `val/loss`
    and clip's `val/hamming_loss`: the recipe table's lower-is-better metrics; `max` for the rest). A mode against a
    table recipe's metric's direction is refused (`tune.metric=val/loss tune.mode=max`: set `min`, or leave it
    unset); for a recipe outside the table it is taken as given (unset: `min` for the table's lower-is-better names,
    else `max`)."""

    scheduler: Literal["asha", "fifo"] = "asha"
    """Trial scheduler: ASHA early stopping on `metric`, or FIFO (every trial runs to the end)."""

    grace_period: int = Field(1, ge=1)
    """ASHA: epochs every trial runs before it may be stopped."""

    reduction_factor: int = Field(2, ge=2)
    """ASHA: keep the best 1/reduction_factor of trials at each rung."""

    max_t: Optional[int] = Field(None, ge=1)
    """ASHA: the most reports a trial makes; default `train.epochs` (one report per epoch), for `tune.recipe=vlm`
    the base config's validation count (every `vlm.eval_every` steps and at the end). Less than that count is
    refused: ASHA would stop every trial before the end of its training."""

    seed: int = Field(0, ge=0)
    """Seed of the searcher (random and Optuna sampling)."""

    address: Optional[str] = None
    """Ray cluster to join (`auto`, `ray://host:10001`, `host:6379`); default RAY_ADDRESS, else a local instance."""

    num_cpus: Optional[int] = Field(None, ge=1)
    """CPUs of the local Ray instance started when no cluster address is given (default: all)."""

    resume: bool = False
    """Continue the search stored at `storage_path/name` (finished trials are kept, errored ones rerun)."""

    max_failures: int = Field(1, ge=0)
    """Retries of a failed trial before it is reported as errored."""

    cpus_per_trial: float = Field(1.0, gt=0.0)
    """CPUs per training worker of a trial."""

    gpus_per_trial: float = Field(0.0, ge=0.0)
    """GPUs per training worker of a trial; fractions let several trials share one GPU."""

    workers_per_trial: int = Field(1, ge=1)
    """Ray Train workers (DeepSpeed ranks) per trial."""

    use_ray_train: Optional[bool] = None
    """true: each trial's recipe runs in a worker group of `workers_per_trial` ranks (kept for the whole search,
    `worker_pool`, or a Ray Train TorchTrainer per trial); false: inside the trial process itself (one rank); None
    (auto): a worker group when `workers_per_trial` > 1, else the trial process, since a one-rank group only adds
    process starts (BENCHMARKS.md "Search overhead levers": a TorchTrainer per trial cost 2.3-3.0x the sequential
    runs on 2 cores, against 0.9x in the trial process)."""

    worker_pool: bool = True
    """With worker groups: keep one group of Ray actors per concurrent trial for the whole search (process group,
    torch and DeepSpeed loaded once) and run each trial's recipe in a free one; false: a new Ray Train
    `TorchTrainer` per trial, whose three process starts cost about 20 s a trial on 2 cores. A 4-trial search:
    0.95x the sequential runs kept (0.77x with the trial process reused, the default), 2.0x with a TorchTrainer
    per trial (BENCHMARKS.md "Kept worker groups"). Each trial still gets a new DeepSpeed engine; a group whose
    trial failed is built anew."""

    train_poll_interval_s: float = Field(2.0, gt=0.0)
    """How often Ray Train's controller polls a trial's workers (Ray's `RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`; 2 s, Ray's
    own default), given to every Ray process of the search. Each worker group's start and finish wait for a poll:
    0.2 s took a one-worker `TorchTrainer.fit` from 14.3 to 9.5 s and a 4-trial FIFO search from 153 to 117 s on
    2 cores (BENCHMARKS.md "Search overhead levers"); the CPU demo profile sets 0.2. Ray's 2 s stays the default
    for clusters, where trials last long and the controllers of many workers poll them all. Applies when the
    search starts Ray itself (a cluster's own processes keep theirs)."""

    reuse_actors: Optional[bool] = None
    """Run the next trial in the process the last one finished in (Tune's `reuse_actors`): saves a process
    start per trial and, in the trial process, the recipe's first-call costs. None (default): yes when the recipe
    runs in the trial process (a 4-trial search on 2 cores: 0.54x the sequential runs instead of 0.93x) or in kept
    worker groups (0.77x instead of 0.95x); no with a TorchTrainer per trial, where only the trial's driving
    process would be kept and that measured slower. Tune fails the next trial when the previous one's training
    thread still runs 2 s after its stop; an ASHA stop comes at a report, where the thread ends at once (tested).
    See BENCHMARKS.md "Search overhead levers"."""

    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """How a trial's Ray Train workers are placed over the cluster's nodes (`ScalingConfig.placement_strategy`):
    PACK fills one node first (fast local collectives), SPREAD puts them on different nodes."""

    storage_path: Optional[Path] = None
    """Where Tune keeps trial state for resume; default `<run.output_dir>/tune` (absolute; shared on clusters)."""

    name: str = "search"
    """Search name: the folder under `storage_path`, the MLflow parent run's name and the trial run prefix."""

    shared_cache_dir: Optional[Path] = None
    """Frozen-feature and description cache shared by all trials; default `<storage_path>/<name>/cache`."""

    best_config: Optional[Path] = None
    """Where the best trial's full config is written as YAML; default `<storage_path>/<name>/best.yaml`."""

    register_best: bool = False
    """Register the best trial's exported model under `tracking.register_name` once the search ends."""

    @field_validator("storage_path", "name")
    @classmethod
    def _no_glob_characters(cls, value):
        return value if value is None else refuse_glob_characters(value)  # the trials' run folders go under it

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, value):
        # every trial's run.name is `<name>-<trial id>`, which must be one folder name: with a separator here
        # each trial failed its config check after Ray had started
        return refuse_folder_path(value, "the search folder is <tune.storage_path>/<tune.name> and each trial's "
                                         "run.name is <tune.name>-<trial id>; put folders in tune.storage_path, "
                                         "and give tune.name")

    @property
    def worker_groups(self) -> bool:
        """Whether trials run in Ray Train worker groups (`use_ray_train` resolved)."""
        return self.use_ray_train if self.use_ray_train is not None else self.workers_per_trial > 1

    @property
    def reuse_trial_processes(self) -> bool:
        """Whether Tune reuses trial processes (`reuse_actors` resolved: by default unless each trial starts a
        TorchTrainer)."""
        if self.reuse_actors is not None:
            return self.reuse_actors
        return not self.worker_groups or self.worker_pool

    @model_validator(mode="after")
    def _ranks_need_a_worker_group(self) -> "TuneConfig":
        if self.use_ray_train is False and self.workers_per_trial > 1:
            raise ValueError(f"workers_per_trial={self.workers_per_trial} needs use_ray_train true (or unset): a "
                             "trial's ranks are a Ray Train worker group, and in the trial process it runs one rank")
        return self


PIPELINES = {"vlm-fusion": "mmlnb_dist.pipeline:run_vlm_fusion"}
"""`tune.recipe` values that are pipelines of several stages rather than one recipe; their trials report what their
last stage, the training recipe `train.recipe`, reports."""


def reporting_recipe(cfg: Any) -> Optional[Any]:
    """The recipe-table row (`RecipeSpec`) whose validation metrics a search's trials report: `tune.recipe`'s, or a
    pipeline's `train.recipe`'s; None for a recipe outside the table, whose reports are not known before it runs."""
    from ..recipes import RECIPES

    return RECIPES.get(cfg.train.recipe if cfg.tune.recipe in PIPELINES else cfg.tune.recipe)


def reported_metrics(cfg: Any, spec: Any) -> List[str]:
    """The metric names a trial of `spec`'s recipe reports after each validation: `val/<name>` of its metrics; the
    j-of-k accuracies (`at_least_{j}_of_top_k`) only up to the section's `top_k` (clip)."""
    top_k = getattr(getattr(cfg, spec.section, None), "top_k", None)
    return [f"val/{m}" for m in spec.metrics
            if not (m.startswith("at_least_") and isinstance(top_k, int) and int(m.split("_")[2]) > top_k)]


def metric_direction(cfg: Any, metric: Optional[str] = None) -> Optional[str]:
    """`min` or `max`: the direction of `metric` (default `tune.metric`) for the trials' recipe (its table row's
    `lower_is_better`); for a recipe outside the table `min` for a name any table recipe counts lower-is-better
    (a loss), else None (not known)."""
    from ..recipes import RECIPES

    metric = metric or cfg.tune.metric
    name = metric[len("val/"):] if metric.startswith("val/") else metric
    spec = reporting_recipe(cfg)
    if spec is not None:
        return "min" if name in spec.lower_is_better else "max"
    return "min" if any(name in s.lower_is_better for s in RECIPES.values()) else None


def search_mode(cfg: Any) -> str:
    """`tune.mode` resolved: as set, else `tune.metric`'s own direction (`max` when it is not known). The one place
    the driver, the searcher, ASHA, the best-trial choice and the registration take the mode from."""
    return cfg.tune.mode or metric_direction(cfg) or "max"


def check_goal(cfg: Any) -> None:
    """Refuse a `tune.metric` the trials never report (naming the valid choices, with a did-you-mean: Ray would fail
    the first trial's first report with a traceback and store the search with it), and a `tune.mode` against the
    metric's direction (ASHA would stop the better trials and the worst would be reported best). `ValueError`s."""
    from ..recipes import RECIPES

    named = cfg.tune.recipe
    if named not in RECIPES and named not in PIPELINES and ":" not in named:  # every trial would fail importing it
        known = sorted(RECIPES) + sorted(PIPELINES)
        close = difflib.get_close_matches(named.replace("_", "-"), known, n=1, cutoff=0.6)
        raise ValueError(f"tune.recipe: '{named}' is no recipe of the table nor a pipeline"
                         + (f"; did you mean '{close[0]}'?" if close else "")
                         + f" (choose one of {', '.join(known)}, or 'package.module:Name' for a recipe class)")
    spec = reporting_recipe(cfg)
    metric, mode = cfg.tune.metric, cfg.tune.mode
    if spec is None:
        return
    choices = reported_metrics(cfg, spec)
    if metric not in choices:
        close = difflib.get_close_matches(metric, choices, n=1, cutoff=0.6)
        who = f"{cfg.tune.recipe} trials" + (f" (train.recipe={spec.name})" if cfg.tune.recipe in PIPELINES else "")
        raise ValueError(f"tune.metric: '{metric}' is not reported by {who}"
                         + (f"; did you mean '{close[0]}'?" if close else "")
                         + f" (they report {', '.join(choices)})")
    direction = metric_direction(cfg)
    if mode is not None and mode != direction:
        raise ValueError(f"tune.mode: '{mode}' contradicts tune.metric={metric}, where "
                         f"{'lower' if direction == 'min' else 'higher'} is better ({spec.name} recipe): set "
                         f"tune.mode={direction}, or leave tune.mode unset (it follows the metric)")


def kept_metric(cfg: Any) -> Optional[str]:
    """The `train.best_metric` a search's trials keep their checkpoint by, so that the model a trial keeps (evaluates
    and exports) is the one its `tune.metric` ranks: `tune.metric`'s name when the trials train `train.recipe` (a
    table recipe, or a pipeline whose last stage it is); None when they train another recipe. A search ranking on
    `val/kappa` while each trial kept its best-balanced-accuracy epoch named a best trial whose kept model was not
    the one scored. A `train.best_metric` set (in the config or an override) apart from it is a `ConfigError`
    naming both."""
    spec = reporting_recipe(cfg)
    metric = cfg.tune.metric
    if spec is None or spec.name != cfg.train.recipe or not metric.startswith("val/"):
        return None
    name = metric[len("val/"):]
    if name != cfg.train.best_metric and "best_metric" in cfg.train.model_fields_set:
        raise ConfigError(f"tune.metric={metric} ranks the trials, but train.best_metric={cfg.train.best_metric} "
                         f"picks the checkpoint each trial keeps: the best trial's model would not be the one "
                         f"scored. Set train.best_metric={name} or tune.metric=val/{cfg.train.best_metric}, or leave "
                         f"train.best_metric unset (a search's trials then keep the checkpoint best on tune.metric)")
    return name
