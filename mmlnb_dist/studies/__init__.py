"""Variant studies: the rows of an ablation or baseline table, trained on the same shards over seeds, in one table.

    mmlnb-dist ablate --config clip-multilabel data.shards=...   [--rows concat,sum] [--seeds 0,1,2]
    study = run_study(cfg, rows=None, seeds=[0, 1, 2])           # what the command calls

A recipe lists its rows in a `variants` module named by the recipe table (`RecipeSpec.variants`), which defines
`rows(cfg) -> {row: (description, [dotted overrides])}` (the first row is the reference: the full model) and
`METRICS` (the table's columns, metric names of the recipe). Each row x seed is one training run of the recipe in
`<run.output_dir>/<run.name>-study/<row>-seed<s>` (the study's folder, `study_folder`: beside the train run of the
same config, not in it), driven as a pipeline stage: a rerun skips the runs that finished with
the same settings, resumes an interrupted one and reruns one whose settings changed. Runs that share a setting
share its caches (`run.cache_dir`: the study's `cache/`).

A recipe that reads descriptions (fusion) gets them once for the whole study (`studies.descriptions`): the VLM is
fine-tuned and describes the shards once, the base VLM describes them once more for the rows that ask for it
(`DESCRIPTIONS` in the variants module: the "no VLM fine-tuning" row), and every row x seed trains on one of
those sets. `descriptions="shards"` skips the VLM and trains every row on the text already in `data.shards`.
How often a description set or a frozen-feature cache was reused instead of computed is counted in
`table.json["cache"]` and printed.

Rows run one after another in this process, or, when the command passes `train_jobs` (the `ablate` command does
with `tune.max_concurrent > 1`: `tuning.study`), as concurrent Ray Tune trials.

The table (mean and standard deviation over seeds on the test split, else validation; the reference row first)
is written to `<study dir>/table.md` and `table.json` and, with MLflow tracking, logged to a parent run whose
children are the rows' runs.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..config import Config, apply_overrides, config_from_dict
from ..core.distributed import DistEnv, init_engine_process_group
from ..core.divergence import TrainingDiverged
from ..core.errors import ConfigError, UserError
from ..core.files import refuse_file_in_the_way, strict_json
from ..core.logging import DETAIL
from ..core.runlock import FolderLock
from ..pipeline import run_stage
from ..recipes import RECIPES, recipe_class
from .cache import cache_counts, format_cache
from .descriptions import BASE, FINE_TUNED, SHARDS, check_source, prepare_descriptions, require_shards
from .figure import save_study_figure
from .fingerprints import job_fingerprint
from .rows import leave_out_unfit
from .table import finite as _finite, first_line, format_table, keep_earlier_table, summarise

log = logging.getLogger(__name__)

Rows = Dict[str, Tuple[str, List[str]]]


@dataclass
class StudyResult:
    study_dir: Path
    split: str
    """The split the table reports (test when the shards have one, else val)."""
    metrics: List[str]
    table: Dict[str, Dict[str, Any]]
    """row -> {"description", "overrides", "descriptions" (source), "seeds", "runs": [run dirs], "trained": [what
    each run's recipe recorded it trained], "<metric>": [values], "<metric>_mean", "<metric>_std" (None for one
    seed)}"""
    markdown: str
    parent_run_id: Optional[str] = None
    skipped: List[str] = field(default_factory=list)
    """Runs that were up to date (`row-seedN`)."""
    cache: Dict[str, Any] = field(default_factory=dict)
    """What was computed once and reused (see `cache_counts`)."""
    failed: Dict[str, str] = field(default_factory=dict)
    """Runs that raised (`row-seedN` -> the error's first line): their rows are marked failed in the table."""


@dataclass
class RowJob:
    """One row x seed: its config (with the row's descriptions), the fingerprint of its settings, its stage name."""

    row: str
    seed: int
    cfg: Config
    fingerprint: str

    @property
    def name(self) -> str:
        return f"{self.row}-seed{self.seed}"


TrainJobs = Callable[[Config, Dict[str, RowJob]], Dict[str, Dict[str, Any]]]
"""Runs the jobs that are not up to date and returns each one's stage info (`train_row`'s); `tuning.study`
provides one that runs them as Ray Tune trials."""


def study_folder(cfg: Config) -> Path:
    """The study's folder, `<run.output_dir>/<run.name>-study`: beside the train run of the same config
    (`<run.output_dir>/<run.name>`), not in it, so neither writes into the other's folder."""
    return Path(cfg.run.output_dir) / f"{cfg.run.name}-study"


def study_rows(cfg: Config) -> Tuple[Rows, List[str]]:
    """The recipe's rows for `cfg` and the metrics its table reports (the variants module's `metrics(cfg)` where it
    has one: columns that depend on the config, else its `METRICS`)."""
    module = _variants(cfg)
    columns = module.metrics(cfg) if hasattr(module, "metrics") else module.METRICS
    return module.rows(cfg), list(columns)


def _variants(cfg: Config):
    spec = RECIPES[cfg.train.recipe]
    if not spec.variants:
        raise ConfigError(f"train.recipe: the {spec.name} recipe lists no ablation or baseline rows")
    return importlib.import_module(spec.variants)


def choose_rows(cfg: Config, available: Rows, rows: Optional[Sequence[str]], descriptions: Optional[str]) -> List[str]:
    """The rows to train, the reference (full model) first: `rows`, else every row of the recipe but those that
    would repeat the full model. With `vlm.finetune=false` every row reads the base VLM's descriptions, so a row
    whose only change is reading them (fusion's `no_fine_tune`) is left out, and refused when asked for; with
    `descriptions="shards"` it is left out too (`description_sources` refuses it when asked for)."""
    chosen = list(rows) if rows else list(available)
    unknown = [r for r in chosen if r not in available]
    if unknown:
        raise ConfigError(f"--rows: unknown row(s) {', '.join(unknown)}; the {cfg.train.recipe} recipe has "
                          f"{', '.join(available)}")
    repeats = [r for r in chosen if _reads_base_text_only_there(cfg, r, descriptions)]
    if repeats and rows and descriptions != SHARDS:
        raise ConfigError(f"--rows: with vlm.finetune=false every row reads the base VLM's descriptions, so "
                          f"{', '.join(repeats)} would repeat the full model; leave it out, or let the VLM be "
                          f"fine-tuned (vlm.finetune=true) to compare against its descriptions")
    if repeats and not rows:
        log.info("%s; row(s) %s (the same model on the same text) left out", "--descriptions shards: every row "
                 "reads data.shards' text" if descriptions == SHARDS else "vlm.finetune=false: every row reads the "
                 "base VLM's descriptions", ", ".join(repeats))
        chosen = [r for r in chosen if r not in repeats]
    reference = next(iter(available))
    if reference in chosen:  # the table reads against the full model: it comes first
        chosen = [reference] + [r for r in chosen if r != reference]
    return chosen


def _reads_base_text_only_there(cfg: Config, row: str, descriptions: Optional[str]) -> bool:
    """Whether `row` differs from the others by reading the base VLM's text while no row reads a fine-tuned VLM's
    (`vlm.finetune=false`) or every row reads the shards' own (`descriptions="shards"`)."""
    if (cfg.vlm.finetune and descriptions != SHARDS) or not RECIPES[cfg.train.recipe].needs_descriptions:
        return False
    return getattr(_variants(cfg), "DESCRIPTIONS", {}).get(row) == BASE


def description_sources(cfg: Config, rows: Sequence[str], descriptions: Optional[str]) -> Dict[str, Optional[str]]:
    """row -> where its text comes from (None: the recipe reads no descriptions). `descriptions="shards"` puts
    every row on `data.shards`' own text; a row that needs the base VLM cannot be run that way. With
    `vlm.finetune=false` (no fine-tuned VLM, as in `pipeline`) every row reads the base VLM's text."""
    check_source(cfg, descriptions)
    if not RECIPES[cfg.train.recipe].needs_descriptions:
        return {row: None for row in rows}
    if descriptions != SHARDS and not cfg.vlm.finetune:
        return {row: BASE for row in rows}
    by_row = getattr(_variants(cfg), "DESCRIPTIONS", {})
    if descriptions == SHARDS:
        need_vlm = [r for r in rows if by_row.get(r, FINE_TUNED) == BASE]
        if need_vlm:
            raise ConfigError(f"--descriptions shards: row(s) {', '.join(need_vlm)} compare against descriptions of "
                              f"the base VLM, which only the VLM stages make; leave them out with --rows or use "
                              f"--descriptions vlm")
        return {row: SHARDS for row in rows}
    return {row: by_row.get(row, FINE_TUNED) for row in rows}


def row_config(cfg: Config, row: str, overrides: Sequence[str], seed: int, study_dir: Path) -> Config:
    """The config of one run: the study's config, the row's overrides, the seed, its own run folder."""
    raw = cfg.model_dump(mode="json")
    raw = apply_overrides(raw, [*overrides, f"run.seed={seed}", f"run.output_dir={study_dir}",
                                f"run.name={row}-seed{seed}", f"run.cache_dir={study_dir / 'cache'}",
                                "run.resume=false"])
    try:
        row_cfg = config_from_dict(raw, f"row '{row}'")
    except ConfigError as err:
        raise ConfigError(f"ablation row '{row}' ({' '.join(overrides)}): {err}") from None
    # A row is an ablated model: registering it under the profile's model name could hand it the champion alias.
    row_cfg.tracking.register_name = None
    return row_cfg


def _split_of(result: Dict[str, Any]) -> str:
    return "test" if any(k.startswith("test/") for k in result) else "val"


def train_row(job: RowJob) -> Dict[str, Any]:
    """Train one row x seed as a pipeline stage (skipped when done with the same settings); its stage info:
    the val/test metrics, what the recipe recorded it trained, its feature-cache counts, whether it was skipped."""
    from ..core.recipe import run as run_recipe

    klass = recipe_class(job.cfg.train.recipe)

    def work(resume: bool) -> Dict[str, Any]:
        job.cfg.run.resume = resume
        try:
            out = run_recipe(klass, job.cfg)
        except TrainingDiverged as err:
            # a result of the study (this row's settings diverge), recorded as done: the same settings would
            # diverge at the same step again, and the other rows still make a table
            log.warning("study row %s diverged: %s", job.name, err)
            out = {"diverged": str(err)}
        return {"metrics": {k: v for k, v in out.items() if isinstance(v, (int, float)) and
                            k.startswith(("val/", "test/"))},
                "trained": out.get("trained"), "diverged": out.get("diverged"),
                "feature_cache": {"hits": int(out.get("cache/hits", 0)), "misses": int(out.get("cache/misses", 0))},
                "pid": os.getpid()}  # which process trained it (a Ray trial's worker, or this one)

    stage = run_stage(job.name, Path(job.cfg.run.dir), job.fingerprint, work)
    return {**stage.info, "skipped": stage.skipped}


def run_study(cfg: Config, rows: Optional[Sequence[str]] = None, seeds: Sequence[int] = (0,),
              descriptions: Optional[str] = None, train_jobs: Optional[TrainJobs] = None) -> StudyResult:
    """Train every row x seed (skipping up-to-date runs), then write and log the table.

    descriptions: `vlm` (default for recipes that read text: generated once per study) or `shards`.
    train_jobs: how the runs are trained (default: one after another here, `train_row`)."""
    available, metrics = study_rows(cfg)
    chosen = choose_rows(cfg, available, rows, descriptions)
    if not seeds:
        raise ConfigError("--seeds: give at least one seed")
    for flag, given in (("--rows", list(rows or [])), ("--seeds", list(seeds))):
        twice = next((x for x in given if given.count(x) > 1), None)
        if twice is not None:  # one run would count as two in the mean and the standard deviation
            what = f"seed {twice}" if flag == "--seeds" else str(twice)
            raise ConfigError(f"{flag}: {what} is listed twice (each is one run of the table; give it once)")
    negative = next((s for s in seeds if s < 0), None)
    if negative is not None:  # else refused as each row's run.seed, not as the flag that gave it
        raise ConfigError(f"--seeds: {negative} is negative (run.seed takes 0 or more); give seeds such as 0,1,2")
    seeds = sorted(seeds)  # `--seeds 1,0` is the study of `--seeds 0,1`: the same runs, table and parent run
    sources = description_sources(cfg, chosen, descriptions)
    require_shards(cfg.data.shards)  # every row trains on it or on text generated from it
    study_dir = study_folder(cfg)
    refuse_file_in_the_way(study_dir, "the study's folder <run.output_dir>/<run.name>-study")
    if (study_dir / "config.yaml").is_file():  # a train run named <name>-study: its folder is no study's
        raise UserError(f"{study_dir} holds a run (its config.yaml), not a study: give the study another run.name "
                        f"(its folder is <run.output_dir>/<run.name>-study), or move that run away")
    if not study_dir.exists() and (Path(cfg.run.dir) / "table.json").is_file():  # written before the move
        log.warning("an earlier study of this config lies in %s (its table.json: studies went in the run's folder "
                    "then); this one trains its runs anew in %s", cfg.run.dir, study_dir)
    # Every run's config is built (and validated) before the first one starts.
    configs = {(row, s): row_config(cfg, row, available[row][1], s, study_dir) for row in chosen for s in seeds}
    chosen, configs = leave_out_unfit(chosen, configs, _variants(cfg), asked=bool(rows))
    if cfg.tracking.register_name:
        log.info("study %s: its runs are not registered (tracking.register_name=%s is for train and pipeline); "
                 "register one with: mmlnb-dist register --run %s/<row>-seed<seed>", study_dir.name,
                 cfg.tracking.register_name, study_dir)
    # One study per folder: a second ablate of the same config (its rows, table, study.json and parent run) trained
    # the rows the first had not reached yet, failed on those it held, and both wrote the table
    main = DistEnv.from_environment().is_main
    lock = FolderLock(study_dir, "mmlnb-dist ablate", study=True).acquire() if main else None
    try:
        # rank 0's alone under a launcher: every rank runs the study, and each opened a parent run of its own
        parent = _open_parent(cfg, study_dir, chosen, seeds) if main else None
        try:
            return _run_rows(cfg, parent, study_dir, chosen, seeds, configs, sources, available, metrics, train_jobs)
        except BaseException as err:  # the parent run ends as the study did (it stayed RUNNING for good)
            if parent is not None:
                parent.finish(status="KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            raise
    finally:
        if lock is not None:
            lock.release()


def _run_rows(cfg, parent, study_dir, chosen, seeds, configs, sources, available, metrics,
              train_jobs) -> StudyResult:
    """`run_study` once its runs' configs are built and its parent run is open: train, tabulate, log."""
    # One process group for every engine of the study (DeepSpeed caches its groups at module level).
    init_engine_process_group(DistEnv.from_environment(), cfg.distributed)
    texts = prepare_descriptions(cfg, {s for s in sources.values() if s}, study_dir,
                                 parent.run_id if parent else None, parent.uri if parent else None)
    jobs: Dict[str, RowJob] = {}
    for (row, seed), run_cfg in configs.items():
        if parent is not None:  # the rows log where the parent is (the default store follows run.output_dir)
            run_cfg.tracking.parent_run_id, run_cfg.tracking.uri = parent.run_id, parent.uri
        if sources[row] is not None:
            run_cfg.data.shards = texts.paths[sources[row]]
        job = RowJob(row, seed, run_cfg, job_fingerprint(run_cfg))
        jobs[job.name] = job
        log.info("study %s: row %s (%s), seed %d", study_dir.name, row, available[row][0], seed)
    infos = (train_jobs or train_in_process)(cfg, jobs)
    skipped = [name for name, info in infos.items() if info.get("skipped")]
    results = {(job.row, job.seed): {**infos[name].get("metrics", {}), "run_dir": str(job.cfg.run.dir),
                                     "trained": infos[name].get("trained"), "diverged": infos[name].get("diverged"),
                                     "failed": infos[name].get("failed")} for name, job in jobs.items()}
    failed = {name: info["failed"] for name, info in infos.items() if info.get("failed")}
    cache = cache_counts(texts, sources, jobs, infos)
    log.info("%s", format_cache(cache), extra=DETAIL)  # (the table printed under it ends with this line)
    split = "test" if any(_split_of(r) == "test" for r in results.values()) else "val"  # a diverged run has none
    table = summarise(results, available, chosen, seeds, metrics, split)
    for row in chosen:  # where its text came from and what each seed's run recorded it trained
        table[row]["descriptions"] = sources[row]
        table[row]["trained"] = [results[(row, s)]["trained"] for s in seeds]
    markdown = format_table(table, metrics, split, study_dir.name, seeds) + "\n" + format_cache(cache) + "\n"
    result = StudyResult(study_dir, split, metrics, table, markdown, parent.run_id if parent else None, skipped,
                         cache, failed)
    if not DistEnv.from_environment().is_main:  # every rank knows the table; rank 0 alone writes it (one writer)
        return result
    kept = keep_earlier_table(study_dir, chosen, seeds)  # another study's table (other rows or seeds) stays
    if kept is not None:
        log.warning("study %s: the earlier table (other rows or seeds) is kept as %s (and .md, .png)", study_dir, kept)
    (study_dir / "table.md").write_text(markdown)
    stored = {"split": split, "seeds": list(seeds), "metrics": metrics, "rows": table, "cache": cache}
    (study_dir / "table.json").write_text(json.dumps(strict_json(stored), indent=2, allow_nan=False))  # NaN: null
    reference = next(iter(available))  # drawn as the reference only when the study trained it
    figure = save_study_figure(table, metrics, split, study_dir.name, study_dir / "table.png",
                               reference=reference if reference in chosen else None)
    if parent is not None:
        flat = {f"{row}/{m}_{stat}": table[row][f"{m}_{stat}"] for row in chosen for m in metrics
                for stat in ("mean", "std") if _finite(table[row][f"{m}_{stat}"])}
        flat.update({f"cache/{k}": float(v) for k, v in cache.items() if isinstance(v, (int, float))})
        parent.finish(metrics=flat, artifacts=[study_dir / "table.md", study_dir / "table.json", figure],
                      status="FAILED" if failed else "FINISHED")
    return result


def train_in_process(cfg: Config, jobs: Dict[str, RowJob]) -> Dict[str, Dict[str, Any]]:
    for path in dict.fromkeys(str(job.cfg.data.shards) for job in jobs.values()):
        require_shards(path)  # the generated description sets too, before the first row's record says it stopped
    infos: Dict[str, Dict[str, Any]] = {}
    for name, job in jobs.items():
        try:
            infos[name] = train_row(job)
        except Exception as err:  # the other rows still make a table: this one is marked failed (rerun: retried)
            log.error("study run %s failed: %s", name, first_line(err))
            log.error("study run %s failed:", name, exc_info=True, extra=DETAIL)  # its traceback: study.log only
            infos[name] = {"failed": first_line(err), "skipped": False}
    return infos


def _open_parent(cfg: Config, study_dir: Path, rows: Sequence[str], seeds: Sequence[int]):
    """The study's MLflow parent run (reused when the study resumes), or None without MLflow tracking."""
    if "mlflow" not in cfg.tracking.backends:
        return None
    from ..core.tracking.runs import ParentRun
    from ..core.tracking.server import default_tracking_uri

    state_path = study_dir / "study.json"
    try:
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    except ValueError as err:
        raise UserError(f"{state_path} is not valid JSON ({err}); remove it to start the study's MLflow run "
                        f"afresh") from None
    uri = default_tracking_uri(cfg.tracking, cfg.run.output_dir)
    params = {"rows": ",".join(rows), "seeds": ",".join(map(str, seeds))}
    resume_id = state.get("parent_run_id")
    # The parent run holds one study's table: other rows or seeds are another study (its params would name the
    # first one's, and the first one's row metrics would stay beside the new table's). A study.json written
    # before it kept its rows and seeds resumes as it did.
    earlier = {k: state[k] for k in params if k in state}
    if resume_id and earlier and earlier != params:
        log.info("study %s: rows %s, seeds %s differ from the earlier call's (rows %s, seeds %s): a new MLflow "
                 "parent run (the earlier one, %s, keeps its table)", study_dir.name, params["rows"],
                 params["seeds"], earlier.get("rows"), earlier.get("seeds"), resume_id)
        resume_id = None
    parent = ParentRun.open(cfg.tracking, uri, cfg.run.output_dir, f"{cfg.run.name}-study",
                            tags={"stage": "ablate", "recipe": cfg.train.recipe}, params=params,
                            resume_id=resume_id)
    if parent is not None:
        study_dir.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps({"parent_run_id": parent.run_id, "tracking_uri": uri, **params}))
    return parent
