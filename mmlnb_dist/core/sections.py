"""The shared config sections every stage reads: the run, distributed execution, training and tracking.

Recipe-specific sections live in their recipe package (`recipes/<name>/config.py`); data and slides sections
beside their code. `mmlnb_dist.config.Config` assembles the root.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional

from pydantic import Field, field_validator, model_validator

from .config import PathText, Section
from .files import sha256_file

log = logging.getLogger(__name__)


class RunConfig(Section):
    output_dir: Path = Path("runs")
    """Parent folder of run folders; each run writes to `<output_dir>/<name>`."""

    name: str = "mmlnb"
    """Run name: the run folder's name and the MLflow run name."""

    seed: int = Field(0, ge=0)
    """Global seed: model init, data shuffling, augmentation and dropout derive from it."""

    resume: bool = False
    """Continue the run found in the run folder from its latest checkpoint instead of starting afresh."""

    cache_dir: Optional[Path] = None
    """Caches that outlive one run (frozen encoder features); default: inside the run folder. A search points
    all its trials at one, so equal encoders are computed once."""

    @property
    def dir(self) -> Path:
        return self.output_dir / self.name

    def evaluation_dir(self, split: str) -> Path:
        """Where `evaluate` of this run keeps the tracking journal of one split's evaluation: one folder per split,
        so evaluations of val and test can run at once, each its own MLflow run."""
        return self.output_dir / f"{self.name}-evaluate-{split}"

    @field_validator("output_dir", "name")
    @classmethod
    def _no_glob_characters(cls, value):
        return refuse_glob_characters(value)

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, value):
        # "." or ".." made the run folder the output folder itself (mixed with every other run's) or its parent;
        # a separator nested it, and `<name>-evaluate-<split>` then landed elsewhere.
        return refuse_folder_path(value, "the run folder is <run.output_dir>/<run.name>; put folders in "
                                         "run.output_dir, and give run.name")

    @field_validator("cache_dir")
    @classmethod
    def _a_folder_to_be(cls, value):
        # a file there (or above it) failed the first feature-cache write with a traceback, after the shards had
        # been read and the first batches encoded
        file = next((p for p in (value, *value.parents) if p.is_file()), None) if value is not None else None
        if file is not None:
            raise ValueError(f"{file} is a file, not a folder" + (f" (it would hold {value})" if file != value else "")
                             + "; give a folder for the caches, or leave run.cache_dir unset (inside the run folder)")
        return value


def refuse_folder_path(value, where: str):
    """`value` unless it is more (or less) than one folder name: `.`, `..`, or a name holding `/` or `\\`;
    `where` says which folder it names and which setting to change, for the message."""
    if value in (".", "..") or "/" in value or "\\" in value:
        raise ValueError(f"'{value}' is not one folder name: {where} no '/' or '\\' (nor '.' or '..' alone)")
    return value


GLOB_CHARACTERS = "[]*?"
"""Characters a run folder's path may not hold: DeepSpeed globs checkpoint files under it."""


def refuse_glob_characters(value):
    """`value` (a run folder, or a folder run folders go under) unless it holds a glob character: DeepSpeed finds
    a checkpoint's files with glob patterns built from the folder's path, so with `[`, `*` or `?` in it training
    ran to its end and then could not load its best checkpoint back."""
    bad = sorted(set(GLOB_CHARACTERS) & set(str(value)))
    if bad:
        raise ValueError(f"'{value}' holds {' '.join(bad)}, which DeepSpeed reads as glob pattern characters when "
                         f"it loads checkpoints from a run folder under it (they would not load back); choose a "
                         f"name without {' '.join(GLOB_CHARACTERS)}")
    return value


WAIT_FIELDS = ("rank0_wait_s",)
"""The `distributed` fields that say how long ranks wait for each other: they never change what a run computes,
so stage fingerprints leave them out (`DistributedConfig.results_dump`) and a resume may change them."""


class DistributedConfig(Section):
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    """torch.distributed backend; `auto` picks nccl with CUDA, gloo on CPU."""

    zero_stage: Literal[0, 1, 2, 3] = 0
    """DeepSpeed ZeRO stage."""

    offload_optimizer: bool = False
    """ZeRO-3 (or 2): keep optimizer states in CPU memory."""

    offload_params: bool = False
    """ZeRO-3: keep parameters in CPU memory between uses."""

    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Training precision. bf16 on Ampere or newer GPUs; fp16 uses dynamic loss scaling."""

    gradient_clipping: float = Field(1.0, ge=0.0)
    """Global gradient-norm clip (0 disables)."""

    micro_batch_per_gpu: Optional[int] = Field(None, ge=1)
    """Samples per GPU per forward pass; default: the global batch divided by world size (no accumulation)."""

    rank0_wait_s: int = Field(7 * 24 * 3600, ge=1)
    """Seconds the other ranks wait while rank 0 works alone (the pipeline's tile, shards and register stages
    under a launcher, a recipe's export and registration), which may last hours. They wait in a gloo group of
    their own, so the collectives' timeout (30 minutes) does not end the wait, and they stop at once when rank 0
    dies (its connections close)."""

    deepspeed_config: Optional[PathText] = None
    """A DeepSpeed JSON used instead of the generated one: batch keys are still derived, and it may not set
    `optimizer` or `scheduler` (the recipe builds both from its config, so that one place sets the lr)."""

    @model_validator(mode="after")
    def _warn_offload_below_its_stage(self):
        """An offload the ZeRO stage does not take is dropped from the DeepSpeed config (`core.engine`): said once
        when the config is validated, not refused (a search space may sample offload and stage apart)."""
        ignored = ([f"distributed.offload_optimizer=true needs distributed.zero_stage 2 or 3 (this config has "
                    f"{self.zero_stage})"] if self.offload_optimizer and self.zero_stage < 2 else []) + \
                  ([f"distributed.offload_params=true needs distributed.zero_stage 3 (this config has "
                    f"{self.zero_stage})"] if self.offload_params and self.zero_stage < 3 else [])
        if ignored:
            log.warning("%s: ignored, nothing is offloaded to the CPU", "; ".join(ignored))
        return self

    def results_dump(self) -> Dict[str, Any]:
        """The fields that decide results, for fingerprints: all but `WAIT_FIELDS` (waiting longer does not
        make a pipeline rebuild its fine-tuned model), and a user's DeepSpeed JSON by its content too: the same
        path edited (another ZeRO stage, bf16) trains another model, which a pipeline took for up to date."""
        dumped = self.model_dump(mode="json", exclude=set(WAIT_FIELDS))
        if self.deepspeed_config and Path(self.deepspeed_config).is_file():
            dumped["deepspeed_config_sha256"] = sha256_file(self.deepspeed_config)
        return dumped


class LRScheduleConfig(Section):
    name: Literal["constant", "cosine"] = "constant"
    """Shape after the warmup: constant at `lr`, or a cosine decay from `lr` to `lr * min_lr_ratio`."""

    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0)
    """Share of the optimizer steps spent in a linear warmup from lr/warmup_steps up to `lr`."""

    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)
    """Learning rate at the end of the cosine, as a fraction of `lr`."""


class TrainConfig(Section):
    recipe: str = "fusion"
    """Training recipe `mmlnb-dist train` runs (a name in the recipe table, `mmlnb_dist/recipes/__init__.py`)."""

    epochs: int = Field(150, ge=1)
    """Training epochs."""

    global_batch_size: int = Field(32, ge=1)
    """Samples per optimizer step across all ranks (micro batch x accumulation x world size)."""

    optimizer: Literal["adam", "adamw"] = "adam"
    """Optimizer."""

    lr: float = Field(1e-4, gt=0.0)
    """Peak learning rate."""

    weight_decay: float = Field(0.0, ge=0.0)
    """Weight decay (Adam's L2 form when optimizer is adam, decoupled for adamw)."""

    lr_schedule: LRScheduleConfig = LRScheduleConfig()
    """Learning-rate schedule over all optimizer steps (constant by default: the paper's Adam at 1e-4)."""

    eval_batch_size: Optional[int] = Field(None, ge=1)
    """Samples per rank per evaluation batch; default: the training micro batch."""

    eval_every: int = Field(1, ge=1)
    """Evaluate on the validation split every this many epochs (and after the last)."""

    best_metric: str = "balanced_accuracy"
    """Validation metric that picks the best checkpoint: one of the recipe's metric names (`loss` is lower-better)."""

    evaluate_test: bool = True
    """At the end, also evaluate the best checkpoint on the test split (when the shard set has one). A search sets
    it false for every trial, so no configuration is compared on test numbers."""

    checkpoint_every: int = Field(1, ge=1)
    """Save a resumable checkpoint every this many epochs."""

    checkpoint_every_steps: int = Field(0, ge=0)
    """Also save a resumable checkpoint every this many optimizer steps inside an epoch (0: off; fusion and CLIP
    training). It records the data position (which samples each rank and loader worker has consumed), so a
    resumed run continues the epoch with exactly the remaining samples, on the same or a different number of
    processes. When on, every checkpoint of the run (epoch ends too) is tagged `step-NNNNNN` by its optimizer step.
    A resume may change it (how often a run saves changes no weight: a run preempted once may resume with step
    checkpoints, `core.recipe.RESUME_MAY_CHANGE`)."""

    keep_checkpoints: int = Field(2, ge=1)
    """Latest checkpoints kept (the best one is always kept as well)."""

    log_every: int = Field(10, ge=1)
    """Log step metrics every this many optimizer steps."""


class TrackingConfig(Section):
    backends: List[Literal["stdout", "mlflow"]] = ["stdout", "mlflow"]
    """Metric-logger backends; every one logs from rank 0 only."""

    uri: Optional[str] = None
    """MLflow tracking URI (`sqlite:///PATH`, a relative PATH read from the folder the command runs in and recorded
    absolute; `http(s)://HOST[:PORT]`; `postgresql://`, `mysql://`, `mssql://` (`+driver` too); `databricks`);
    default: `sqlite:///<run.output_dir>/mlflow.db` created on first use."""

    server: Optional[str] = None
    """Address the run logs through to `uri` (tune's own server of a SQLite `uri`); never in its config.yaml."""

    experiment: str = "mmlnb"
    """MLflow experiment name."""

    system_metrics: bool = False
    """Log CPU, memory and GPU use alongside training metrics."""

    system_metrics_interval_s: float = Field(10.0, gt=0.0)
    """Seconds between two system-metric samples when `system_metrics` is on."""

    spool: bool = True
    """Append every MLflow call to `<run_dir>/tracking/<stage>.jsonl` so a resume or `tracking sync` sends what the
    server missed. Off, a process's calls go straight to the server (what it misses is lost); the run folder still
    records its MLflow run (`<stage>.json`), which a resumed run continues and `register --run FOLDER` reads."""

    request_timeout_s: float = Field(5.0, gt=0.0)
    """HTTP timeout of one tracking-server request; a dead server costs at most this (plus one retry)."""

    request_max_retries: int = Field(1, ge=0)
    """HTTP retries per tracking-server request (MLflow's default of 7 stalls a run for minutes)."""

    log_environment: bool = True
    """Tag each run with the git commit, the device and the versions of torch, deepspeed, mlflow, ray, ..."""

    log_dataset: bool = True
    """Log the shard set (`data.shards` manifest: name, digest, counts) as the run's MLflow dataset input."""

    parent_run_id: Optional[str] = None
    """Nest the run under this MLflow run (`mlflow.parentRunId` tag); the tune driver sets it per trial."""

    register_name: Optional[str] = None
    """Register the exported classifier under this Model Registry name at the end of training (off: None)."""

    register_alias: Optional[str] = "champion"
    """Alias the new version takes, only when it beats the current holder on `register_metric` (null or '': none,
    the version is registered and no alias moves)."""

    register_metric: Optional[str] = None
    """Metric that decides the alias, e.g. `best/val/balanced_accuracy`; default `best/val/<train.best_metric>`."""

    register_mode: Optional[Literal["max", "min"]] = None
    """Whether a higher (max) or lower (min) `register_metric` is better; unset: the metric's own direction (min for
    the recipe's lower-is-better metrics such as the loss, else max)."""

    @field_validator("uri")
    @classmethod
    def _a_tracking_store(cls, value):
        return refuse_unmakeable_sqlite_store(refuse_malformed_tracking_uri(value))

    @field_validator("register_name")
    @classmethod
    def _a_registry_name(cls, value):  # refused by MLflow only after the training, the version already logged
        return value if value is None else refuse_registry_name(value)

    @field_validator("register_alias")
    @classmethod
    def _a_registry_alias(cls, value):  # null was the text 'null': an alias of that name moved
        return refuse_registry_alias(value or "")

    @field_validator("backends")
    @classmethod
    def _each_backend_once(cls, value):  # listed twice, every metric was logged twice
        twice = sorted({b for b in value if value.count(b) > 1})
        if twice:
            raise ValueError(f"{twice[0]} is listed twice (it would log every metric twice); list each backend "
                             f"once, e.g. [stdout, mlflow]")
        return value

    @field_validator("experiment")
    @classmethod
    def _an_experiment_name(cls, value):
        if not value:  # MLflow refuses it only at the run's start: the run went offline, and every sync failed
            raise ValueError("an MLflow experiment needs a name (e.g. mmlnb)")
        return value


def refuse_registry_name(name: str, suggest: str = "tracking.register_name=") -> str:
    """`name` when MLflow's registry takes it as a registered model name that `models:/NAME@ALIAS` reads back;
    else a ValueError saying why (`register --name` and `tracking.register_name` share the rule; `suggest` prefixes
    the name it suggests)."""
    import shlex

    if not name.strip():
        raise ValueError("a registered model name cannot be empty")
    if name != name.strip():  # registered with them, models:/NAME@ALIAS as typed without them found no model
        raise ValueError(f"a registered model name cannot begin or end with a space; "
                         f"{suggest}{shlex.quote(name.strip())}?")
    if "/" in name or ":" in name:
        raise ValueError("a registered model name cannot contain '/' or ':' (models:/NAME@ALIAS reads them as "
                         "separators)")
    if "?" in name:  # MLflow registers it, and reads `models:/a?b@champion` as the model `a` with a query
        raise ValueError("a registered model name cannot contain '?' (models:/NAME@ALIAS would read what follows "
                         "it as a query string, and predict could not load the model)")
    if name in (".", ".."):  # MLflow reads names as paths: refused only after the model was logged
        raise ValueError("MLflow refuses a registered model name that reads as a path ('.', '..')")
    return name


def refuse_registry_alias(alias: str) -> str:
    """`alias` ('' for none) when MLflow takes it as a model alias; else a ValueError saying why."""
    import re

    if alias and not re.fullmatch(r"[\w\-]+", alias):
        raise ValueError("an alias may only contain alphanumerics, underscores (_) and dashes (-)")
    if alias and (alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias)):
        raise ValueError("reserved by MLflow ('latest' and v<number> name versions); choose another, e.g. champion")
    return alias


def refuse_unmakeable_sqlite_store(uri):
    """`uri`, unless it is a SQLite store whose file cannot be: a path under a file, a folder, or a folder to make
    in one that cannot be written. Such a store was taken for a lost server (the run went offline, and `tracking
    sync`, which it then suggested, failed the same way)."""
    if not uri or not uri.lower().startswith("sqlite:///"):
        return uri
    import os

    path = Path(uri[len("sqlite:///"):].split("?", 1)[0])
    if str(path) == ":memory:":
        return uri
    if path.is_dir():
        raise ValueError(f"the SQLite store {path} is a folder; name a file in it (.../mlflow.db)")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not path.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is not a folder (a file), so the SQLite store {path} cannot be made "
                         f"under it; give a path whose folders are folders")
    if not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"the SQLite store {path} cannot be made: {folder} cannot be written")
    return uri


TRACKING_URI_FORMS = ("sqlite:///PATH (three slashes; four for an absolute path), http(s)://HOST[:PORT], "
                      "postgresql://, mysql:// or mssql:// (optionally +driver), databricks")
"""The tracking URIs a config accepts, as the refusal lists them."""

DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")


def refuse_malformed_tracking_uri(value):
    """`value` (None: the default store) when MLflow 3 can track to it; else why not, with the accepted forms.
    Caught here, `file:./mlruns` (MLflow 3's refused file store), `sqlite://runs/x.db` (two slashes: a host, no
    file) or `htp://...` passed `config validate` and crashed training with a raw traceback."""
    if value is None:
        return value
    from urllib.parse import urlsplit

    import os
    from importlib.metadata import entry_points

    uri = str(value).strip()
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower() if sep else ""
    if uri.lower() == "databricks" or scheme == "databricks":
        return uri
    if scheme == "sqlite":
        ok = rest.startswith("/") and len(rest.split("?", 1)[0]) > 1
    elif scheme in ("http", "https"):
        ok = bool(urlsplit(uri).hostname)
    elif scheme.split("+", 1)[0] in DATABASE_SCHEMES:
        ok = bool(rest)
    elif scheme in {e.name for e in entry_points(group="mlflow.tracking_store")}:
        ok = True  # a store an installed MLflow plugin provides
    else:  # MLflow 3 opens its old file store (`file:`, a plain path) only when told to
        ok = (not sep or scheme == "file") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() in ("1", "true")
    if not ok:
        raise ValueError(f"'{value}' is not a tracking store MLflow 3 can use; accepted forms: {TRACKING_URI_FORMS} "
                         f"(a file store: file:PATH with MLFLOW_ALLOW_FILE_STORE=true; a plugin's scheme)")
    # stored with its scheme in lower case, as MLflow opens it: every reader (tune, study, predict) sees one spelling
    return f"{scheme}{sep}{rest}" if sep else uri
