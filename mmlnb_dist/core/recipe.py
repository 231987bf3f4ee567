"""The recipe protocol and the one `run()` that the CLI, the pipeline, Tune trials and tests all call.

A recipe is a class, one instance per run and process (in the spirit of torchtune's recipe interface):

    class MyRecipe:
        name = "my-recipe"                      # tags, logs
        def __init__(self, cfg, env, report=None): ...
        def setup(self) -> None: ...            # data, model, engine, logger; resume when cfg.run.resume,
                                                # then logger.resumed_at(the checkpoint's step)
        def train(self) -> dict: ...            # the loop; returns run_dir and the final metrics
        def evaluate(self, split: str) -> dict: ...
        def save_checkpoint(self) -> None: ...
        def cleanup(self, status: str) -> None: ...   # FINISHED, FAILED or KILLED; a run stopped on request
                                                # (SystemExit 0, as Tune's ASHA stops a trial) is FINISHED, and
                                                # `self.logger`, if it has one, gets the tag stopped_early=true
        @classmethod
        def check_config(cls, cfg, world_size) -> None: ...  # optional: problems in the config alone (no data,
                                                # nothing on disk); `config validate` and the pipeline's start
        @classmethod
        def reads(cls, cfg) -> list: ...        # optional: folders the run reads throughout (its shard set):
                                                # held with a shared lock, so nothing rewrites them under it
        @classmethod
        def trained_on(cls, cfg) -> dict: ...   # optional: {tracking stage: the dataset specs it trains on}; a
                                                # resume on other shard sets than recorded is refused
        @classmethod
        def check(cls, cfg, env) -> None: ...   # optional: config problems found before any work
        @classmethod
        def check_models(cls, cfg) -> None: ... # optional: the weights it loads are reachable (nothing built);
                                                # the pipeline calls it before its first stage
        result_sections = ("run", "data", ...)  # optional: config sections whose change alters its results
        resume_may_change = ("train.epochs",)    # optional: keys a resume may change (besides RESUME_MAY_CHANGE)

`run()` owns the run folder (`cfg.run.dir`): it holds an exclusive `FolderLock` on it for the whole run (a second
job into the same folder stops at once, naming the holder), and on `run.resume=true` compares the resolved config
stored there (`config.yaml`) with the new one, refusing differences that change results (listed) and recording
the allowed ones in `resume_changes.json`. `check()` must therefore create nothing on disk.

`report(step_or_epoch, metrics)` is optional; Ray Tune trials report through it, on every rank. A recipe whose reports
are not one per `train.epochs` epoch marks its last one with `FINAL_REPORT: 1.0`, so that a scheduler (ASHA) never
stops a trial that is finishing.
The recipe table (`mmlnb_dist/recipes/__init__.py`) names every recipe; `core` knows none of them.
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Dict, FrozenSet, Mapping, Optional, Protocol, Sequence, Set, Tuple, Type

import yaml

from .checkpoint import holds_checkpoints
from .distributed import DistEnv, init_engine_process_group
from .engine import check_precision
from .errors import ConfigError
from .files import load_yaml, replace_text, strict_json
from .logging import setup_logging, stopped_on_request
from .provenance import allowed, flatten, format_changes, read_record, refuse_changes, write_record
from .runlock import FolderLock, ReadLock
from .sections import WAIT_FIELDS
from .signals import sigterm_as_interrupt
from .tracking.folder_import import FINISHED_FILE
from .tracking.lineage import check_resumed_datasets, recorded_datasets

log = logging.getLogger(__name__)

Report = Callable[[int, Dict[str, float]], None]
FINAL_REPORT = "trial/final"
"""The metric (1.0) that marks a run's last report when its reports are not one per `train.epochs` epoch."""

TRAIN_CADENCE: Dict[str, FrozenSet[str]] = {
    "train": frozenset({"log_every", "keep_checkpoints", "eval_batch_size", "checkpoint_every",
                        "checkpoint_every_steps"}),
    "data.loader": frozenset({"preflight", "max_bad_sample_rate"})}
"""Settings of a training run that do not change the trained model (how often it logs and checkpoints, how many
checkpoints it keeps, the evaluation batch, the shard preflight and the bad-sample budget), by section: a resume
accepts them (`RESUME_MAY_CHANGE`), and the pipeline's train stage and a study's rows leave them out of their
fingerprints, so a rerun changing only these keeps a finished run and resumes a stopped one."""

RESUME_MAY_CHANGE: Sequence[str] = ("run.resume", "run.output_dir", "run.name", "tracking.*", "train.epochs",
                                    *(f"{section}.{name}" for section, names in TRAIN_CADENCE.items()
                                      for name in sorted(names)),
                                    # not cadence: a kept finished run would not score its test split when asked
                                    "train.evaluate_test",
                                    *(f"distributed.{k}" for k in WAIT_FIELDS))
"""Keys any resume may change: more epochs, logging, checkpoint cadence (how often a run saves changes no weight: a
preempted run may ask for step checkpoints) and retention, whether the finish also scores the test split (no weight
depends on it: a run started without may ask for its test numbers), tracking, how long ranks wait for each other, what
only decides whether the run goes on (the shard-file preflight, the bad-sample budget: the samples skipped are the
same), where the run folder lies (the stored config is read from the folder resumed: a run moved or renamed is
that run).
Everything else in a recipe's `result_sections` decides its results (seed, learning rate, shards, model, world
size...) and is refused."""


SCHEDULE_LENGTHS: Sequence[Tuple[str, Sequence[str]]] = (("train.lr_schedule", ("train.epochs",)),)
"""(learning-rate schedule key, the keys that set its length) of a recipe without its own `schedule_lengths`: a
resume that changes a length under a decaying schedule is warned about."""


def _dotted(cfg: Any, key: str) -> Any:
    """`cfg`'s value at a dotted key, None where a part is missing."""
    for part in key.split("."):
        cfg = getattr(cfg, part, None)
    return cfg


class Recipe(Protocol):
    name: str

    def __init__(self, cfg: Any, env: DistEnv, report: Optional[Report] = None) -> None: ...
    def setup(self) -> None: ...
    def train(self) -> Dict[str, Any]: ...
    def evaluate(self, split: str) -> Dict[str, Any]: ...
    def save_checkpoint(self) -> Any: ...
    def cleanup(self, status: str = "FINISHED") -> None: ...


def run(recipe_cls: Type[Recipe], cfg: Any, env: Optional[DistEnv] = None,
        report: Optional[Report] = None) -> Dict[str, Any]:
    """Check the config, create the process group, then setup -> train -> cleanup; returns train's result.

    The process group lives as long as the process: DeepSpeed caches its groups at module level, so a group
    destroyed here would break the next engine built in the same process (the demo pipeline, a Tune trial).
    """
    env = env or DistEnv.from_environment()
    setup_logging(env.rank)
    check_precision(cfg.distributed, env.device)  # before the folder is taken
    run_dir = Path(cfg.run.dir)
    # Rank 0 holds the folder; a launcher (deepspeed, torchrun) stops the other ranks when rank 0 exits.
    command = getattr(recipe_cls, "name", "run")
    lock = FolderLock(run_dir, command) if env.is_main else None
    if lock is not None:
        lock.refuse_if_held()  # "in use by pid N" rather than whatever the other job's files make check() say
    reading = [ReadLock(Path(folder), command) for folder in getattr(recipe_cls, "reads", lambda _: [])(cfg)
               if folder] if env.is_main else []
    with ExitStack() as held:
        for read_lock in reading:  # before check(): a shard set being rebuilt is refused, not half-checked
            held.enter_context(read_lock)
        check = getattr(recipe_cls, "check", None)
        if check is not None:
            check(cfg, env)
        return _run_checked(recipe_cls, cfg, env, report, run_dir, lock)


def _run_checked(recipe_cls: Type[Recipe], cfg: Any, env: DistEnv, report: Optional[Report], run_dir: Path,
                 lock: Optional[FolderLock]) -> Dict[str, Any]:
    """`run` after the checks passed: take the folder, then setup -> train -> cleanup."""
    if lock is not None:
        lock.acquire()
    try:
        if cfg.run.resume:
            # the config names data.shards by path: a set rebuilt there since is only seen in its manifest digest,
            # and a set moved elsewhere unchanged is the same data (its path may change). Checked before the
            # config, so that a refused resume records no allowed changes.
            trained = getattr(recipe_cls, "trained_on", lambda _: {})(cfg)
            for stage, specs in trained.items():
                check_resumed_datasets(run_dir, stage, specs)
            check_resume_config(cfg, run_dir, recipe_cls, record=env.is_main, moved=moved_data(run_dir, trained))
        if env.is_main:
            record_deepspeed_json(cfg, run_dir)
            # A finished run resumed for more epochs is unfinished until its new finish writes the result again:
            # the shorter run's result beside the longer run's config.yaml read as finished (`tracking import`).
            (run_dir / FINISHED_FILE).unlink(missing_ok=True)
        init_engine_process_group(env, cfg.distributed)
        recipe = recipe_cls(cfg, env, report)
        status = "FAILED"
        try:
            with sigterm_as_interrupt():  # a scheduler's SIGTERM ends the run as KILLED, like Ctrl-C
                recipe.setup()
                result = recipe.train()
            status = "FINISHED"
            return result
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except SystemExit as err:
            if stopped_on_request(err):  # e.g. ASHA stopping a Tune trial at a report: a result, not a failure
                status = "FINISHED"
                tag = getattr(getattr(recipe, "logger", None), "set_tags", None)  # the recipes keep theirs there
                if tag is not None:
                    tag({"stopped_early": "true"})
            raise  # Ray's function runner expects its own stop back
        finally:
            recipe.cleanup(status)
    finally:
        if lock is not None:
            lock.release()


def write_result(run_dir: Path, result: Mapping[str, Any]) -> Path:
    """Write a finished run's result, `metrics.json` (what `tracking import` reads as "the run finished"; `run`
    removes it before a run trains), whole or not at all: a kill during a plain write left a torn file that read as
    a finished run, or destroyed a resumed run's earlier result."""
    path = Path(run_dir) / FINISHED_FILE
    replace_text(path, json.dumps(strict_json(dict(result)), indent=2, allow_nan=False))
    return path


def config_sections(cfg: Any, sections: Optional[Sequence[str]]) -> Dict[str, Any]:
    """The resolved config as plain YAML data, limited to `sections` (all when None)."""
    data = yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=True))
    return {k: v for k, v in data.items() if sections is None or k in sections}


def moved_data(run_dir: Path, trained: Mapping[str, Sequence[Dict[str, Any]]]) -> Set[Tuple[str, str]]:
    """(recorded folder, folder now) of each shard set the run was trained on (`trained`: the recipe's
    `trained_on`) that now lies in another folder with the same manifest digest in every split: the same data
    moved. A stage that recorded no digests (or other splits) is not taken for moved."""
    moved = set()
    for stage, specs in trained.items():
        old = {str(s.get("context")): s for s in recorded_datasets(run_dir, stage) or []}
        new = {str(s.get("context")): s for s in specs}
        digests = {split: [(e.get("profile") or {}).get("manifest_sha256") for e in (old[split], new[split])]
                   for split in old if split in new}
        if not old or set(old) != set(new) or any(not a or a != b for a, b in digests.values()):
            continue
        folders = {(str(old[split].get("source")), str(new[split].get("source"))) for split in old}
        if len(folders) == 1:
            moved |= folders
    return moved


DEEPSPEED_RECORD = "deepspeed_config_source.json"
"""In the run folder: the path and sha256 of the user's `distributed.deepspeed_config` the run started with (a
resume compares the file's content too: the same path edited trains another model)."""
DEEPSPEED_CONTENT = "distributed.deepspeed_config (content)"


def _deepspeed_content(cfg: Any) -> Optional[str]:
    """The user's DeepSpeed JSON as compared on resume: its path and content digest (None: none is used), the
    digest the pipeline's fingerprints hold (`DistributedConfig.results_dump`)."""
    dist = getattr(cfg, "distributed", None)
    digest = dist.results_dump().get("deepspeed_config_sha256") if dist is not None else None
    return None if digest is None else f"{dist.deepspeed_config} (sha256 {digest[:16]})"


def record_deepspeed_json(cfg: Any, run_dir: Path) -> None:
    """Write `DEEPSPEED_RECORD` for this start (a resume that passed its check records the file it now reads)."""
    content = _deepspeed_content(cfg)
    if content is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_record(run_dir / DEEPSPEED_RECORD, {"deepspeed_config": content})


def _resolved(value: Any) -> Optional[str]:
    return str(Path(value).expanduser().resolve()) if isinstance(value, str) and value else None


def _stored_config(path: Path) -> Dict[str, Any]:
    """The resolved config a run saved at start (`path`, its config.yaml), or a `ConfigError` naming the file when it
    is not one (edited by hand): a traceback, or an empty file read as "every setting added since the run started"."""
    try:
        stored = load_yaml(path)
    except yaml.YAMLError as err:
        stored, why = None, f"not YAML: {err}"
    else:
        if stored is None:
            why = "empty"
        elif not isinstance(stored, dict):
            why = f"not a mapping of sections (a {type(stored).__name__})"
        else:
            why = next((f"section '{k}' is not a mapping ({v!r})" for k, v in stored.items()
                        if not isinstance(v, dict)), "")
    if why:
        raise ConfigError(f"{path}: the config the run started with is {why}. Resuming compares it with this one: put "
                          f"back what the run wrote, or start a new run under another run.name.")
    return stored


def check_resume_config(cfg: Any, run_dir: Path, recipe_cls: type, record: bool = True,
                        moved: Set[Tuple[str, str]] = frozenset()) -> None:
    """Refuse a resume whose config differs from the stored one in a way that changes results (listing every
    such key); log and record the allowed changes. Nothing stored (a run killed before it saved its config):
    nothing to compare. A key naming a shard set in `moved` ((recorded folder, folder now), `moved_data`)
    by its old and new folder may change: the same data, elsewhere."""
    stored_path = run_dir / "config.yaml"
    if not stored_path.is_file():
        return
    sections = getattr(recipe_cls, "result_sections", None)
    allow = (*RESUME_MAY_CHANGE, *getattr(recipe_cls, "resume_may_change", ()))
    old = flatten({k: v for k, v in _stored_config(stored_path).items() if sections is None or k in sections})
    # A setting added since the run started (an upgrade between kill and resume) is taken at its default, how the
    # older version ran (such a key refused every resume: "vlm.keep_best: '<absent>' -> False"); said and recorded,
    # since a default that does not reproduce the older behaviour would change the result
    assumed = {key: default for key, default in flatten(config_sections(type(cfg).model_construct(), sections)).items()
               if key not in old}
    if assumed:
        log.warning("%s has no %s (added since the run started): taken at the default%s, as the run started",
                    stored_path, ", ".join(f"{k}={v!r}" for k, v in assumed.items()), "s" if len(assumed) > 1 else "")
    old.update(assumed)
    new = config_sections(cfg, sections)
    recorded = run_dir / DEEPSPEED_RECORD
    if recorded.is_file() and (sections is None or "distributed" in sections):
        old[DEEPSPEED_CONTENT] = read_record(recorded).get("deepspeed_config")
        new = {**new, DEEPSPEED_CONTENT: _deepspeed_content(cfg)}
        if allowed("distributed.deepspeed_config", allow):
            allow = (*allow, DEEPSPEED_CONTENT)
    flat_new = flatten(new)
    allow = (*allow, *(key for key, value in old.items() if value != flat_new.get(key)
                       and (_resolved(value), _resolved(flat_new.get(key))) in moved))
    ckpts = run_dir / "checkpoints"  # none: killed before (or in) its first save, nothing trained a change would mix
    remedy = "Resume with the stored settings (they are in config.yaml), or start a new run under another run.name." \
        if holds_checkpoints(ckpts) else (
            f"Nothing was trained yet ({ckpts} holds no checkpoint): rerun without run.resume (same run.name) to "
            f"start the run afresh with these settings, or resume with the stored ones (they are in config.yaml).")
    changes = refuse_changes(f"{run_dir} (run.resume=true)", old, new, allow=allow, remedy=remedy)
    changes = [c for c in changes if c[0] != "run.resume"]  # how this process started: every resume has it
    if record and (changes or assumed):
        path = run_dir / "resume_changes.json"
        history = read_record(path)["resumes"] if path.is_file() else []
        history.append({"time": time.time(), "changed": {k: [o, n] for k, o, n in changes},
                        **({"assumed_defaults": assumed} if assumed else {})})
        write_record(path, {"resumes": history})
    if changes:
        log.info("resuming with changed settings:\n%s", format_changes(changes))
        for schedule_key, length_keys in getattr(recipe_cls, "schedule_lengths", SCHEDULE_LENGTHS):
            schedule = _dotted(cfg, schedule_key)
            changed = [key for key, _, _ in changes if key in length_keys]
            warmup = getattr(schedule, "warmup_ratio", 0.0) or 0.0
            if changed and getattr(schedule, "name", "constant") != "constant":
                log.warning("%s changed under a %s learning-rate schedule (%s): the rest of the schedule is "
                            "stretched to the new length, so the result equals no uninterrupted run",
                            " and ".join(changed), schedule.name, schedule_key)
            elif changed and warmup > 0:  # the warmup is a share of the steps: a resume inside the new one slows
                log.warning("%s changed under a constant learning-rate schedule with a warmup (%s, warmup_ratio %g): "
                            "the warmup is stretched to the new length (a resumed step inside it trains at a lower "
                            "rate than before), so the result equals no uninterrupted run",
                            " and ".join(changed), schedule_key, warmup)
