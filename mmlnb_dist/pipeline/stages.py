"""Stage bookkeeping: fingerprints, the stage record beside each output, skip / resume / rebuild.

Each stage records a fingerprint of what it was built from (its config sections and its input's digest) in
a hidden file beside its output, `.<output name>.stage.json` (beside, not inside: stages such as the shard
builder replace their output folder whole). A rerun skips a stage whose output carries the same fingerprint,
so an interrupted run continues where it stopped, a changed setting reruns only the stages it reaches, and
search trials that share a setting share the stage's output.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from filelock import FileLock, Timeout

from ..core.distributed import DistEnv, all_gather_object, barrier, rank0_alone
from ..core.divergence import TrainingDiverged
from ..core.errors import UserError
from ..core.files import refuse_file_in_the_way, replace_text
from ..core.runlock import FolderLock
from ..core.sections import DistributedConfig
from ..core.tracking.lineage import DATASETS_RECORD
from ..data.shardset import ShardSet
from .changes import SETTINGS, changed_settings

log = logging.getLogger(__name__)


def stage_file(out: Path) -> Path:
    return out.parent / f".{out.name}.stage.json"


def stopped_reading_elsewhere(run_dir: Path, key: str, folder: Path) -> bool:
    """`run_dir` holds a run that stopped (its stage record open) while its config.yaml's `key` (dotted: `vlm.pairs`,
    `data.shards`) named another folder than `folder`, and the data there is not known to be what the run recorded:
    its recipe would refuse that resume, so the stage fingerprints the folder too and starts again. The same set
    moved (the run recorded the same manifest digest in every split, `core.recipe.moved_data`) is resumed."""
    import yaml

    if read_stage(run_dir).get("status") != "running" or not (run_dir / "config.yaml").is_file():
        return False
    try:
        section, name = key.split(".", 1)
        stored = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get(section, {}).get(name)
    except (OSError, yaml.YAMLError, AttributeError):
        return False  # the run says what is wrong with it when it resumes
    return stored is not None and Path(stored) != Path(folder) and not _moved_here(run_dir, Path(stored), folder)


def _moved_here(run_dir: Path, stored: Path, folder: Path) -> bool:
    """Whether a stage of `run_dir` recorded the shard set at `stored` with the digests the one at `folder` has."""
    from ..core.recipe import moved_data

    try:
        specs = ShardSet.open(folder).dataset_specs()
        stages = json.loads((Path(run_dir) / DATASETS_RECORD).read_text())
    except (OSError, ValueError, KeyError, TypeError, UserError):  # not readable: the run is started again
        return False
    pair = (str(stored.expanduser().resolve()), str(Path(folder).expanduser().resolve()))
    return isinstance(stages, dict) and any(
        pair in {(str(Path(a).resolve()), str(Path(b).resolve())) for a, b in moved_data(run_dir, {stage: specs})}
        for stage in stages)


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_stage(out: Path) -> Dict[str, Any]:
    """The stage record of `out` ({} when there is none or it is unreadable)."""
    try:
        return json.loads(stage_file(out).read_text())
    except (OSError, ValueError):
        return {}


def _write_stage(out: Path, fp: str, status: str, info: Dict[str, Any], owner: Optional[str] = None,
                 settings: Optional[Dict[str, Any]] = None) -> None:
    record = {"fingerprint": fp, "status": status, **({"owner": owner} if owner else {}),
              **({SETTINGS: settings} if settings else {}), **info}
    replace_text(stage_file(out), json.dumps(record, indent=2, default=str))


def _refuse_another_runs_output(name: str, out: Path, state: Dict[str, Any], owner: Optional[str]) -> None:
    """Rebuilding `out` for run `owner` when another pipeline run built it would replace that run's data under
    its results (its trained model, its report) without a word: refused, naming both runs and the way out."""
    holder = state.get("owner")
    if owner and holder and holder != owner:
        raise UserError(f"{name}: {out} holds what pipeline run '{holder}' built from other inputs or settings; "
                        f"this run ('{owner}') would replace it under '{holder}''s results. Give this run its own "
                        f"folder (data.shards=..., the described set follows it; data.synth_dir for synthetic "
                        f"patches), or rebuild it for that run with run.name={holder}")


@dataclass
class StageResult:
    name: str
    output: Path
    fingerprint: str
    skipped: bool
    seconds: float
    info: Dict[str, Any] = field(default_factory=dict)
    status: str = "ran"
    """`ran`, `skipped` (up to date), `reused` (made by an earlier run, before `--from`; `reused-other`: with other
    settings or inputs than this config's) or `input` (given)."""
    rebuilt: Optional[str] = None
    """Why a stage that ran was not skipped though it had run before (for the report), else None."""


Recheck = Callable[[Dict[str, Any]], Optional[str]]
"""`recheck(record)` of an up-to-date stage whose result lives outside its output folder (a registration in the
MLflow store, which a user can lose while the record stays): None when it is still there; else why the stage runs
again; a `UserError` when it cannot be redone (the message says what to do). Rank 0 alone calls it."""


@dataclass
class PlannedStage:
    """A stage ready to run: its output, its fingerprint and its work (`work(resume) -> info`)."""

    name: str
    output: Path
    fingerprint: str
    work: Callable[[bool], Dict[str, Any]]
    main_only: bool = False
    """Rank 0 does the work while the other ranks wait (tiling, shard building); False: every rank works."""
    rank0_wait_s: Optional[int] = None
    """How long the other ranks wait for rank 0's work (`distributed.rank0_wait_s`; None: its default)."""
    owner: Optional[str] = None
    """The pipeline run (`run.name`) the output is built for: another run's is never rebuilt (`run_stage`)."""
    shared: bool = False
    """The output is in a cache that other jobs use at the same time (a search's concurrent `vlm-fusion` trials):
    a job that finds another building it waits for it and then takes what it built (`stage_turn`)."""
    recheck: Optional[Recheck] = None
    """For an output whose record says up to date: whether what it records outside the pipeline's folders is
    still there (`Recheck`); None: the record is trusted."""
    settings: Optional[Dict[str, Any]] = None
    """What the fingerprint covers, by name (`stage_settings`): kept in the record, so that a rebuild names what
    changed; None: a rebuild says only that its inputs or settings changed."""


def rank0_stage(distributed: DistributedConfig, name: str, output: Path, fingerprint: str,
                work: Callable[[bool], Dict[str, Any]]) -> PlannedStage:
    """A stage whose work rank 0 does alone (synth, tile, shards, register) while the others wait for it up to
    `distributed.rank0_wait_s`."""
    return PlannedStage(name, output, fingerprint, work, main_only=True, rank0_wait_s=distributed.rank0_wait_s)


def is_up_to_date(state: Dict[str, Any], out: Path, fp: str) -> bool:
    """The record `state` of `out` says done with fingerprint `fp`, and `out` is still there (a user deletes an
    output to have it rebuilt; its record, a hidden file beside it, stays)."""
    return state.get("fingerprint") == fp and state.get("status") == "done" and Path(out).exists()


@contextmanager
def stage_turn(name: str, out: Path, env: DistEnv, say: Callable[[str], None],
               wait_s: Optional[int] = None) -> Iterator[None]:
    """One job at a time builds `out`: rank 0 takes an exclusive `flock` on `.<out name>.turn` beside it, waiting
    (the other ranks with it, up to `wait_s`) while another job holds it, and keeps it until the stage is over.
    The turn file sits beside `out`, so a rebuild that deletes `out` keeps it; the kernel frees it when its holder
    dies, and the next job then resumes what that one left."""
    lock = FileLock(str(out.parent / f".{out.name}.turn"))
    with rank0_alone(env, wait_s):
        if env.is_main:
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                say(f"{name}: another job is building {out}: waiting for it to finish, then taking what it built")
                lock.acquire()
    try:
        yield
    finally:
        if lock.is_locked:
            lock.release()


def run_stage(name: str, out: Path, fp: str, work: Callable[[bool], Dict[str, Any]],
              say: Callable[[str], None] = log.info, env: Optional[DistEnv] = None,
              main_only: bool = False, rank0_wait_s: Optional[int] = None,
              owner: Optional[str] = None, shared: bool = False, recheck: Optional[Recheck] = None,
              settings: Optional[Dict[str, Any]] = None) -> StageResult:
    """Run `work(resume)` unless `out` already holds this fingerprint as done.

    - done with this fingerprint: skipped;
    - started with this fingerprint and interrupted: `work(resume=True)` continues it;
    - built by the pipeline from other inputs: the stale output is removed and the stage runs afresh;
    - recorded, but its output folder deleted since: runs afresh;
    - a folder the pipeline did not make: refused, never deleted;
    - built by another pipeline run (`owner`: the run's name, recorded with the output) from other inputs or
      settings: refused (an up-to-date output is shared).
    Under a launcher every rank calls it: the work is collective, or (`main_only`) rank 0's alone while the
    others wait (up to `rank0_wait_s`; None: `distributed.rank0_wait_s`'s default) and then read its record.
    Rank 0 alone writes the records. `shared`: wait for another job building `out` first (`stage_turn`).
    `recheck`: an up-to-date output is skipped only when it also says its result is still there (`Recheck`).
    `settings`: what `fp` covers, by name (`stage_settings`), recorded so that a rebuild names what changed.
    """
    env = env or DistEnv()
    refuse_file_in_the_way(out, f"{name}: its output {out}")
    with stage_turn(name, out, env, say, rank0_wait_s) if shared else nullcontext():
        return _run_stage(name, out, fp, work, say, env, main_only, rank0_wait_s, owner, recheck, settings)


def _lost(recheck: Recheck, state: Dict[str, Any], env: DistEnv) -> Optional[str]:
    """`recheck(state)` asked on rank 0 (one lookup, not one per rank) and its answer given to every rank, so all
    skip or all rerun; a refusal is raised on every rank, and so is any other failure of it (rank 0 raises its own
    exception, the others its text), so that no rank is left waiting for an answer."""
    answer: Tuple[Optional[str], Optional[str], Optional[str]] = (None, None, None)
    failure: Optional[BaseException] = None
    if env.is_main:
        try:
            answer = (recheck(state), None, None)
        except UserError as err:
            answer = (None, str(err), None)
        except Exception as err:  # noqa: BLE001 - given to every rank, then raised
            failure, answer = err, (None, None, f"{type(err).__name__}: {err}")
    reason, refused, failed = all_gather_object(env, answer)[0]
    if refused:
        raise UserError(refused)
    if failure is not None:
        raise failure
    if failed:
        raise RuntimeError(f"checking the up-to-date stage's result failed on rank 0: {failed}")
    return reason


def _run_stage(name: str, out: Path, fp: str, work: Callable[[bool], Dict[str, Any]], say: Callable[[str], None],
               env: DistEnv, main_only: bool, rank0_wait_s: Optional[int], owner: Optional[str],
               recheck: Optional[Recheck] = None, settings: Optional[Dict[str, Any]] = None) -> StageResult:
    """`run_stage` once it is this job's turn at `out`."""
    state = read_stage(out)
    barrier(env)  # every rank has read the record before rank 0 changes it
    gone = bool(state) and not out.exists()  # a user deleted the output to have it rebuilt: the record is stale
    why = (changed_settings(state.get(SETTINGS), settings) if state.get("fingerprint") != fp else None) or \
        "its inputs or settings changed"
    changed = f"{why} since {out} was built"
    if is_up_to_date(state, out, fp):
        lost = _lost(recheck, state, env) if recheck is not None else None
        if lost is None:
            say(f"{name}: up to date in {out} (fingerprint {fp}): skipped")
            return StageResult(name, out, fp, True, 0.0, state, status="skipped")
        changed = why = lost
    if gone and state.get("status") == "done":
        say(f"{name}: {out} is gone (its record says done): running it afresh")
    elif gone:  # (most often stopped before its output was made, a refused input: nobody deleted anything)
        say(f"{name}: {out} is not there (its last run stopped before it finished): running it")
    resume = state.get("fingerprint") == fp and state.get("status") == "running" and not gone
    same = state.get("fingerprint") == fp  # (for the report: why a stage that had run runs again)
    rebuilt = None if resume or not state or (gone and same and state.get("status") != "done") else \
        "its output was deleted" if gone and same else why
    if out.exists() and not resume and not state and any(out.iterdir()):
        raise UserError(f"{name}: {out} exists and was not made by this pipeline; move it away or point the "
                        f"config elsewhere")
    if out.exists() and not resume and state:
        _refuse_another_runs_output(name, out, state, owner)
    if env.is_main:
        if out.exists() and not resume:
            FolderLock(out, name).refuse_if_held()  # never pulled from under a job that reads or writes it
            if state:
                say(f"{name}: {changed}: rebuilding it")
            shutil.rmtree(out)
        _write_stage(out, fp, "running", {}, owner, settings)
    barrier(env)
    last_stop = f" (it stopped last time: {state[STOPPED_BY]})" if resume and state.get(STOPPED_BY) else ""
    say(f"{name}: {'resuming' if resume else 'running'} -> {out}{last_stop}")
    # A resumed stage's record adds this run's time to the earlier runs' (a stage stopped after hours and resumed
    # for minutes took hours)
    earlier_seconds, earlier_runs = (float(state.get(WALL_SECONDS) or 0.0), int(state.get(RUNS) or 1)) if resume \
        else (0.0, 0)
    t0 = time.time()
    recorded: Dict[str, Any] = {}  # what the record says, for the result

    def timing() -> Dict[str, Any]:
        # one clock reading for the record and the result: two readings printed 0.3 s and 0.4 s for one run
        recorded.update({WALL_SECONDS: earlier_seconds + time.time() - t0, RUNS: earlier_runs + 1})
        return dict(recorded)

    try:
        if main_only:
            with rank0_alone(env, rank0_wait_s):  # hours of tiling must not trip the collectives' timeout
                info = (work(resume) or {}) if env.is_main else {}
                if env.is_main:
                    _write_stage(out, fp, _end_status(info), {**info, **timing()}, owner, settings)
            if not env.is_main:
                info = read_stage(out)  # what rank 0 recorded
        else:
            info = work(resume) or {}
            if env.is_main:
                _write_stage(out, fp, _end_status(info), {**info, **timing()}, owner, settings)
            barrier(env)
    except BaseException as err:
        _record_stop(name, out, fp, owner, env, err, timing(), settings)
        raise
    secs = recorded[WALL_SECONDS] - earlier_seconds if recorded else time.time() - t0
    if info.get(KEEP_OPEN):
        say(f"{name}: not finished after {secs:.1f}s (the next run retries it): {info.get('reason', '')}")
    else:
        say(f"{name}: done in {secs:.1f}s")
    return StageResult(name, out, fp, False, secs, {**info, **recorded}, rebuilt=rebuilt)


def _record_stop(name: str, out: Path, fp: str, owner: Optional[str], env: DistEnv, err: BaseException,
                 timing: Dict[str, Any], settings: Optional[Dict[str, Any]] = None) -> None:
    """A stage stopped by an error, Ctrl-C or SIGTERM: its record stays open (`running`, so the same command
    resumes it) and keeps the reason, and the log says all that where an overnight run is read, its log file. It
    keeps the stage's `settings` too, so that a rerun with a changed one names it (not "its settings changed")."""
    reason = "interrupted" if isinstance(err, KeyboardInterrupt) else \
        str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
    if env.is_main:
        _write_stage(out, fp, "running", {STOPPED_BY: reason, **timing}, owner, settings)
        level = logging.WARNING if isinstance(err, KeyboardInterrupt) else logging.ERROR  # a user's Ctrl-C
        if isinstance(err, TrainingDiverged):  # resuming would replay the same steps into the same NaN
            log.log(level, "%s: stopped after %.1f s (%s). Its output %s keeps its checkpoints from before that "
                    "step, but the same command would resume them and diverge at the same step again: change the "
                    "setting the error names and run the command again (the changed setting rebuilds the stage)",
                    name, timing[WALL_SECONDS], reason, out)
            return
        # a user error stops the same command at the same place: the fix comes first
        again = "fix what the error names, then run the command again: it resumes it" if isinstance(err, UserError) \
            else "run the same command again and it resumes it"
        log.log(level, "%s: stopped after %.1f s (%s). Its output %s keeps what it finished: %s (the stages done "
                "before it are skipped; a changed setting that reaches it rebuilds it instead)", name,
                timing[WALL_SECONDS], reason, out, again)


STOPPED_BY = "stopped_by"
"""The stage record's reason the stage stopped (an open record: the next run resumes the stage)."""

WALL_SECONDS = "wall_seconds"
"""The stage record's wall time: of the run that did the work, plus the earlier runs it resumed (a rerun that
skips the stage reports it)."""

RUNS = "runs"
"""The stage record's count of the runs its wall time adds up (more than 1: the stage was resumed)."""

SKIPPED_IMAGES = "skipped_images"
"""The shards stage's record of the unreadable images it left out (a line for the report), when there were any."""

KEEP_OPEN = "keep_open"
"""A stage's work returns `{KEEP_OPEN: True, "reason": ...}` when it could not finish for a reason outside the
pipeline (a tracking server down): its record stays `running`, so the same command resumes it next time instead
of skipping it as done."""


def _end_status(info: Dict[str, Any]) -> str:
    return "running" if info.get(KEEP_OPEN) else "done"


def run_planned(stage: PlannedStage, env: Optional[DistEnv] = None) -> StageResult:
    return run_stage(stage.name, stage.output, stage.fingerprint, stage.work, env=env, main_only=stage.main_only,
                     rank0_wait_s=stage.rank0_wait_s, owner=stage.owner, shared=stage.shared,
                     recheck=stage.recheck, settings=stage.settings)


def recorded(stage: PlannedStage, first: str) -> StageResult:
    """A stage before `--from`: its output as an earlier run left it (done), taken as it is."""
    state = require_done(stage.name, stage.output, first)
    if state["fingerprint"] != stage.fingerprint:
        # --from means "take it as it is", so it is used; but this run's results are not this config's alone
        log.warning("--from %s: %s (%s) was built with other settings or inputs than this config gives it; it is "
                    "used as it is, so what follows did not come from this config alone (--from %s rebuilds it)",
                    first, stage.name, stage.output, stage.name)
        return StageResult(stage.name, stage.output, state["fingerprint"], True, 0.0, state, status="reused-other")
    return StageResult(stage.name, stage.output, state["fingerprint"], True, 0.0, state, status="reused")


def require_done(name: str, output: Path, first: str) -> Dict[str, Any]:
    """The record of stage `name` before `--from first`, refused unless its output is there and done."""
    state = read_stage(output)
    if state.get("status") != "done" or not output.exists():
        found = "is missing" if not output.exists() else f"is not complete (status {state.get('status')})"
        raise UserError(f"--from {first}: the output of the earlier stage '{name}' ({output}) {found}; "
                        f"start from an earlier stage (--from {name}) or drop --from")
    return state


def existing_shards(path: Path) -> StageResult:
    """A shard set made elsewhere, as the input of later stages (its fingerprint is its manifest's digest)."""
    shards = ShardSet.open(path)
    return StageResult("input", shards.root, shards.digest[:16], True, 0.0, status="input")
