"""Resumable checkpoints for any recipe: save, resume, retention and the best checkpoint, model-agnostic.

Layout under a recipe's checkpoint folder (usually `runs/<name>/checkpoints/`):

    run.json                        the marker: this folder was written by mmlnb-dist
    epoch-0003/ (or step-000050/)   a DeepSpeed checkpoint (`engine.save_checkpoint`), one per saved tag, with
      checksums.json                size and sha256 of every file in it, written when the save completed
    latest                          the newest complete tag
    best.json                       {"tag", "epoch" or "step", "metric", "value"}: the checkpoint kept as best
    epoch-0003/layout.json          world size, ZeRO stage, micro batch, accumulation it was saved with
    epoch-0003-universal/           made when it is resumed on another number of processes (`core.reshard`)

A save is written to `.partial-<tag>/` and renamed to `<tag>/` once every rank has finished and its checksums are
recorded, so a kill mid-save leaves no folder that looks complete. Resume takes the newest tag whose checksums
match (falling back, with a message, past a torn or damaged one). DeepSpeed's files are pickles: they are only
loaded from folders that carry the marker and whose digests match what this tool recorded at save time.

The recipe passes its own client state (where it stands, its best so far, its history); the manager adds every
rank's RNG state (a resumed run draws the random numbers of an uninterrupted one). Recipes export their models
themselves, from the consolidated fp32 weights of `core.fp32_weights.full_fp32_state_dict`.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from .distributed import DistEnv, all_gather_object, barrier
from .errors import UserError
from .files import replace_text, sha256_file, storage_failure
from .rng import rng_state, set_rng_state
from .reshard import (UNIVERSAL_SUFFIX, Layout, check_compatible, convert_to_universal, describe_change,
                      engine_layout, partition_files, read_layout, restore_buffers, write_layout)

log = logging.getLogger(__name__)

TAG_RE = re.compile(r"^(epoch|step)-(\d+)$")
MARKER = "run.json"
CHECKSUMS = "checksums.json"
SAVED = "saved.json"
"""In each tag folder: its save's sequence number in the run (`list_tags` orders by it), its data position."""
PARTIAL = ".partial-"


class CheckpointError(UserError):
    """A checkpoint folder this tool did not write, or one that is damaged."""


def epoch_tag(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def step_tag(step: int) -> str:
    return f"step-{step:06d}"


def save_sequence(tag_dir: Path) -> int:
    """The order in which a tag was saved in its run (`saved.json`; 0 for a tag saved before it was recorded)."""
    try:
        return int(json.loads((tag_dir / SAVED).read_text())["sequence"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def recorded_epochs(tag_dir: Path) -> Tuple[Optional[int], bool]:
    """(epochs a checkpoint has trained in, whether the last only in part): from the `data_position` its save
    recorded in `saved.json`, else (an older save, a recipe without one) an epoch tag's name; (None, False): unknown."""
    try:
        position = json.loads((tag_dir / SAVED).read_text())["position"]
        partial = position.get("granularity") == "step"  # saved inside the epoch it would re-enter
        return int(position["next_epoch"]) + partial, partial
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        match = TAG_RE.match(tag_dir.name)
        return (int(match.group(2)) + 1, False) if match and match.group(1) == "epoch" else (None, False)


def list_tags(ckpt_dir: Path) -> List[str]:
    """Checkpoint tags present (complete or not), oldest first: in the order they were saved. Their numbers do not
    say it when a run has both kinds (a SIGTERM's `step-000008` inside epoch 1 of a run tagged by epoch is older
    than its `epoch-0002`); tags saved before the order was recorded come first, by number."""
    if not ckpt_dir.is_dir():
        return []
    tags = [p.name for p in ckpt_dir.iterdir() if p.is_dir() and TAG_RE.match(p.name)]
    return sorted(tags, key=lambda t: (save_sequence(ckpt_dir / t), int(TAG_RE.match(t).group(2))))


def holds_checkpoints(ckpt_dir: Path) -> bool:
    """Whether a checkpoint folder holds anything but the marker and what killed saves left (`.partial-*`): a run
    killed in its first save kept nothing, as one killed before it (a new start or other settings are no mix)."""
    ckpt_dir = Path(ckpt_dir)
    return ckpt_dir.is_dir() and any(p.name != MARKER and not p.name.startswith(PARTIAL) for p in ckpt_dir.iterdir())


def record_checksums(tag_dir: Path) -> Dict[str, Dict[str, Any]]:
    """Write `checksums.json` (size and sha256 of every file under `tag_dir`)."""
    files = {str(p.relative_to(tag_dir)): {"size": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(tag_dir.rglob("*")) if p.is_file() and p.name != CHECKSUMS}
    (tag_dir / CHECKSUMS).write_text(json.dumps({"files": files}, indent=1))
    return files


def checkpoint_problem(tag_dir: Path) -> Optional[str]:
    """Why `tag_dir` cannot be trusted (None when every recorded file is there with its recorded digest)."""
    sums = tag_dir / CHECKSUMS
    if not sums.is_file():
        return f"{tag_dir} has no {CHECKSUMS}: the save did not complete, or another tool wrote it"
    try:
        files = json.loads(sums.read_text())["files"]
        if not (isinstance(files, dict) and all(isinstance(w, dict) and {"size", "sha256"} <= w.keys()
                                                for w in files.values())):
            raise ValueError("not a table of files with size and sha256")
    except (ValueError, KeyError, TypeError):  # TypeError: a JSON document that is not a mapping
        return f"{sums} is damaged"
    for name, want in files.items():
        path = tag_dir / name
        if not path.is_file():
            return f"{path} is missing"
        if path.stat().st_size != want["size"] or sha256_file(path) != want["sha256"]:
            return f"{path} differs from what was saved (size or sha256)"
    # added since: DeepSpeed finds ZeRO partition files by pattern, so an unrecorded one would be unpickled too
    added = sorted(p for p in tag_dir.rglob("*")
                   if p.is_file() and p.name != CHECKSUMS and str(p.relative_to(tag_dir)) not in files)
    return f"{added[0]} was not there when the checkpoint was saved" if added else None


def require_marker(ckpt_dir: Path) -> None:
    """Refuse folders this tool did not create: DeepSpeed's checkpoint files are pickles and run code on load."""
    if not (Path(ckpt_dir) / MARKER).is_file():
        raise CheckpointError(f"{ckpt_dir} has no {MARKER}: it was not written by mmlnb-dist (or by a version "
                              f"before checkpoints were marked). Its files are pickles and are not loaded; evaluate "
                              f"an export (safetensors) instead, or start a new run")


def better(new: Optional[float], old: Optional[float], mode: str) -> bool:
    """Whether `new` strictly beats `old` under `mode` ("max": higher is better, "min": lower): the one rule for
    the best checkpoint of every recipe and for the registry alias. A tie does not (the holder keeps it); a
    missing or NaN new value never wins (an undefined metric would otherwise stay the best forever); a missing or
    NaN old value always loses."""
    if new is None or (isinstance(new, float) and math.isnan(new)):
        return False
    if old is None or (isinstance(old, float) and math.isnan(old)):
        return True
    return new > old if mode == "max" else new < old


class CheckpointManager:
    """Save and resume DeepSpeed checkpoints of one run, keep the newest `keep` and the best."""

    def __init__(self, directory: Path, env: DistEnv, keep: int = 2):
        self.dir, self.env, self.keep = Path(directory), env, keep
        self.loaded_layout: Optional[Layout] = None
        """The layout the last loaded checkpoint was saved with (None before a load, or when not recorded)."""

    # -- reading -----------------------------------------------------------------------------------------
    def tags(self) -> List[str]:
        return list_tags(self.dir)

    def latest(self) -> Optional[str]:
        """The newest complete tag (the `latest` pointer is a hint only: a kill between the rename and the
        pointer update, or a damaged newer save, must not decide). Torn or damaged tags are skipped, each
        with a warning; None when no complete tag exists."""
        for tag in reversed(self.tags()):
            problem = checkpoint_problem(self.dir / tag)
            if problem is None:
                return tag
            log.warning("skipping checkpoint %s: %s; falling back to an older one", tag, problem)
        return None

    def none_complete(self) -> CheckpointError:
        """The error for a folder whose checkpoints are all torn or damaged, naming what is wrong with each."""
        problems = [checkpoint_problem(self.dir / t) for t in self.tags()]
        return CheckpointError(f"no complete checkpoint in {self.dir}" + "".join(f"; {p}" for p in problems if p)
                               + ". Copy the run folder again, whole, from where it trained, or start a new run")

    def has_checkpoints(self) -> bool:
        return self.dir.is_dir() and any(self.dir.iterdir())

    def _mark(self) -> None:
        if not (marker := self.dir / MARKER).is_file():
            self.dir.mkdir(parents=True, exist_ok=True)
            marker.write_text(json.dumps({"tool": "mmlnb-dist", "format": 1, "created": time.time()}))

    def check_fresh_start(self, resume: bool, epochs: Optional[int] = None) -> None:
        """Refuse to start a new run on top of an old run's checkpoints (it would mix the two), and, with `epochs`
        (train.epochs), a resume that asks for fewer epochs than the run has trained: it would train nothing and
        record a config that does not describe its model. (Judged from the tag the resume will load, the newest
        complete one: a torn newer tag is no epoch trained; by the data position its save recorded, as a run
        tagged by step has no epoch in its tags' names; a checkpoint inside an epoch needs that epoch too.)"""
        if not resume and holds_checkpoints(self.dir):
            raise UserError(f"{self.dir} already holds checkpoints; pass run.resume=true to continue that run, "
                            f"or choose another run.name / run.output_dir")
        resumed = self.latest() if resume and epochs is not None and self.dir.is_dir() else None
        trained, partial = recorded_epochs(self.dir / resumed) if resumed else (None, False)
        if trained is not None and epochs < trained:
            done = f"{trained - 1} epoch(s) and part of the next" if partial else f"{trained} epochs"
            raise UserError(f"train.epochs={epochs}: the run in {self.dir.parent} has trained {done} (its latest "
                            f"checkpoint {resumed}); resume with train.epochs of at least {trained}, or start a "
                            f"new run (another run.name) for a shorter one")

    best = property(lambda self: self.best_recorded_in(self.latest()))

    def best_recorded_in(self, latest: Optional[str]) -> Optional[Dict[str, Any]]:
        """The best checkpoint as the newest complete tag `latest` (verified by the caller) records it."""
        saved = self.dir / (latest or "-") / SAVED  # first: best.json is stale after a kill past the rename
        return (json.loads(saved.read_text()).get("best") if saved.is_file() else None) or \
            (json.loads(path.read_text()) if (path := self.dir / "best.json").is_file() else None)

    # -- writing -----------------------------------------------------------------------------------------
    def save(self, engine, tag: str, client_state: Dict[str, Any], best: Optional[Dict[str, Any]] = None,
             exclude_frozen_parameters: bool = False) -> str:
        """Collective: every rank calls it (DeepSpeed writes each rank's partition). Then rank 0 records the
        best checkpoint and applies retention, never deleting the best."""
        state = {**client_state, "rng": all_gather_object(self.env, rng_state())}
        partial = PARTIAL + tag
        if self.env.is_main:
            self._mark()
            # every save or conversion a kill cut short (not only this tag's: a SIGTERM's step tag killed mid-save
            # is never saved again by the resumed run, and its half would hold a checkpoint's space for good)
            for stale in self.dir.glob(PARTIAL + "*"):
                shutil.rmtree(stale, ignore_errors=True)
        barrier(self.env)
        with self._space_named(tag):
            engine.save_checkpoint(str(self.dir), tag=partial, client_state=state, save_latest=False,
                                   exclude_frozen_parameters=exclude_frozen_parameters)
        barrier(self.env)
        if self.env.is_main:
            with self._space_named(tag):
                write_layout(self.dir / partial, engine_layout(engine))  # before the checksums: covered by them
                sequence = 1 + max((save_sequence(self.dir / t) for t in self.tags()), default=0)
                position = client_state.get("data_position") or {}  # (what `check_fresh_start` reads back)
                (self.dir / partial / SAVED).write_text(json.dumps({"sequence": sequence, "best": best, "position": {
                    k: position[k] for k in ("next_epoch", "granularity") if k in position}}))  # best: see `best`
                record_checksums(self.dir / partial)
            if (self.dir / tag).exists():  # an earlier save of the same tag (a resumed run repeating it)
                shutil.rmtree(self.dir / tag)
            shutil.rmtree(self.dir / (tag + UNIVERSAL_SUFFIX), ignore_errors=True)  # converted from the old one
            (self.dir / partial).rename(self.dir / tag)
            replace_text(self.dir / "latest", tag)
            if best is not None:
                replace_text(self.dir / "best.json", json.dumps(best, indent=2))
            self._retain(protect=[best["tag"]] if best else [])
        barrier(self.env)
        return tag

    @contextlib.contextmanager
    def _space_named(self, tag: str):
        """A full disk (or quota) while `tag` is written (an OSError, or torch's writer failing without errno:
        `storage_failure`): the half-written folder is removed, the error names it, the space left, the resume's."""
        try:
            yield
        except (OSError, RuntimeError) as err:
            why = storage_failure(err)
            if why is None:
                raise
            shutil.rmtree(self.dir / (PARTIAL + tag), ignore_errors=True)
            free, last = shutil.disk_usage(self.dir).free, self.latest()
            size = sum(f.stat().st_size for f in (self.dir / last).rglob("*") if f.is_file()) if last else 0
            kept = (f"{last} is intact (a checkpoint of this run takes about {size / 2**20:.0f} MB)" if last else
                    "no earlier checkpoint of this run was complete")
            what, why = ("no space left on device saving", why) if isinstance(err, OSError) else \
                ("could not write", f"{why}: a full disk, an exhausted quota or a failing disk")
            raise UserError(f"{what} checkpoint {tag} in {self.dir} ({why}; {free / 2**20:.0f} MB free there now). "
                            f"The half-written checkpoint was removed; {kept}. Free space (fewer train.keep_checkpoints"
                            f", or another run.output_dir), then continue with run.resume=true") from err

    def _retain(self, protect: Sequence[str]) -> List[str]:
        removed = []
        for tag in self.tags()[:-self.keep]:
            if tag in protect:
                continue
            shutil.rmtree(self.dir / tag, ignore_errors=True)
            shutil.rmtree(self.dir / (tag + UNIVERSAL_SUFFIX), ignore_errors=True)
            removed.append(tag)
        return removed

    # -- loading -----------------------------------------------------------------------------------------
    def load(self, engine, tag: Optional[str] = None, *, module_only: bool = False,
             strict: bool = True) -> Tuple[Optional[str], Dict[str, Any]]:
        """Load a checkpoint (the latest by default) into the engine; returns (tag, client_state) and, unless
        `module_only`, restores this rank's RNG state as it was when the checkpoint was saved."""
        if not self.has_checkpoints():  # (an empty folder: a run stopped before its first checkpoint)
            return None, {}
        require_marker(self.dir)
        named, tag = tag, tag or self.latest()
        if tag is None:  # checkpoints named but none complete: "resuming" would train the run afresh over them
            if self.tags():
                raise self.none_complete()
            return None, {}
        problem = checkpoint_problem(self.dir / tag) if named else None  # (`latest()` has just verified it)
        if problem is not None:
            raise CheckpointError(f"cannot load checkpoint {tag}: {problem}")
        load_tag = self._tag_for_this_world(engine, tag)
        universal = load_tag != tag
        # DeepSpeed reads `load_universal` from its config object at load time only; set it for this one load.
        engine._config.load_universal_checkpoint = universal
        try:
            path, client = engine.load_checkpoint(
                str(self.dir), tag=load_tag, load_module_only=module_only, load_optimizer_states=not module_only,
                load_lr_scheduler_states=not module_only, load_module_strict=strict,
            )
        finally:
            engine._config.load_universal_checkpoint = False
        if path is None:
            raise RuntimeError(f"could not load checkpoint {self.dir / tag}")
        if universal:  # DeepSpeed's universal load restores parameters only
            restored = restore_buffers(engine.module, self.dir / tag)
            log.debug("buffers restored from %s: %s", tag, ", ".join(restored) or "none")
        client = client or {}
        if not module_only and client.get("rng"):
            set_rng_state(client["rng"][min(self.env.rank, len(client["rng"]) - 1)])
        return tag, client

    def _tag_for_this_world(self, engine, tag: str) -> str:
        """`tag`, or its universal conversion when it was saved on another number of processes with
        partitioned state (collective then: every rank calls `load`)."""
        saved = self.loaded_layout = read_layout(self.dir / tag)
        if saved is None or saved.world_size == self.env.world_size:
            return tag
        current = engine_layout(engine)
        groups = len(getattr(engine.optimizer, "param_groups", None) or [None])
        check_compatible(saved, current, self.dir / tag, param_groups=groups)
        if self.env.is_main:
            log.warning(describe_change(saved, current))
        if not saved.partitioned or not partition_files(self.dir / tag):  # ZeRO-0: one whole copy, loads anywhere
            return tag
        return convert_to_universal(self.dir, tag, self.env)

    def resume(self, engine, resume: bool, strict: bool = True) -> Dict[str, Any]:
        """With `resume`, load the latest checkpoint and return its client state ({} when there is none);
        without, return {} (a fresh start). `strict=False` for checkpoints saved without frozen weights."""
        if not resume:
            return {}
        tag, client = self.load(engine, strict=strict)
        if tag is None:
            log.info("run.resume=true but no checkpoint in %s: starting from the beginning", self.dir)
            return {}
        log.info("resumed from %s", self.dir / tag)
        return {**client, "tag": tag}


def fp32_state_dict_from_checkpoint(ckpt_dir: Path, tag: Optional[str] = None) -> Tuple[str, Dict[str, torch.Tensor]]:
    """The consolidated fp32 module weights of a saved checkpoint, without building an engine (evaluation).

    ZeRO 1-3 checkpoints are consolidated by DeepSpeed's `zero_to_fp32`; a ZeRO-0 checkpoint holds the module
    whole in its model-states file. Only for run folders this tool wrote: DeepSpeed's files are pickles."""
    ckpt_dir = Path(ckpt_dir)
    manager = CheckpointManager(ckpt_dir, DistEnv())
    if not ckpt_dir.is_dir():
        raise UserError(f"no checkpoint folder {ckpt_dir}")
    if not manager.has_checkpoints():
        raise UserError(f"no checkpoint in {ckpt_dir}: the folder is empty (its run stopped before its first "
                        f"checkpoint); resume the run (run.resume=true) to train one")
    require_marker(ckpt_dir)
    verified = None  # the tag whose digests were just checked: each file is hashed once (a large model's is slow)
    if tag is None:
        best = manager.best_recorded_in(verified := manager.latest())
        tag = (best["tag"] if best else None) or verified
    if tag is None:
        raise manager.none_complete()
    if not (ckpt_dir / tag).is_dir():
        raise UserError(f"no checkpoint {tag} in {ckpt_dir} (has: {', '.join(manager.tags()) or 'none'})")
    problem = checkpoint_problem(ckpt_dir / tag) if tag != verified else None
    if problem is not None:
        raise CheckpointError(f"cannot load checkpoint {tag}: {problem}")
    model_states = sorted((ckpt_dir / tag).glob("*model_states.pt"))
    if not model_states:
        raise UserError(f"{ckpt_dir / tag} is not a DeepSpeed checkpoint (no *model_states.pt)")
    # DeepSpeed writes these files with pickled Python objects (optimizer and client state): weights_only=False,
    # acceptable only because the marker and the digests recorded at save time were checked above.
    states = torch.load(model_states[0], map_location="cpu", weights_only=False)
    if states.get("ds_config", {}).get("zero_optimization", {}).get("stage", 0) > 0 or not states.get("module"):
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        return tag, dict(get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir), tag=tag))
    low = sorted({str(v.dtype).replace("torch.", "") for v in states["module"].values()
                  if v.is_floating_point() and v.dtype != torch.float32})
    if low:
        # The optimizer's fp32 masters are in the file (`fp32_groups`), but DeepSpeed records no parameter names for
        # them at ZeRO-0 and which parameters each group holds is the recipe's choice: matching them to the
        # module's names would be a guess, so the module's own 16-bit weights are read instead, and said.
        log.warning("%s was saved in %s at ZeRO stage 0: its weights are read as the module's %s copies (the "
                    "fp32 master weights cannot be matched to parameter names from the file), so they are "
                    "rounded to %s, as the training forward passes saw them", ckpt_dir / tag, "/".join(low),
                    "/".join(low), "/".join(low))
    return tag, {k: (v.float() if v.is_floating_point() else v) for k, v in states["module"].items()}
