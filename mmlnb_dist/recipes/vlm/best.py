"""`vlm.keep_best`: the adapter of the validation with the lowest `val/loss` (the HF Trainer's
`load_best_model_at_end` with `metric_for_best_model=eval_loss`).

At every validation (`vlm.eval_every` and the final one), on all ranks, a `val/loss` strictly lower than the best so
far saves the adapter (collective: ZeRO-3 gathers) into a folder of its own, `<run>/adapter-best-step-NNNNNN/`, then
rank 0 records `{"step", "val/loss", "folder"}` in `<run>/best.json` (atomic rename) and removes the previous best
folder. The record always names a complete folder: a kill between the two steps leaves a stray folder, removed at
the next start. At the end `<run>/adapter/` (what `adapter_dir` names, what describe / predict / export-vlm read)
is the best folder's copy (hard links where the filesystem allows) and `<run>/adapter-last/` the last step's adapter.

Resume: the record is read back when a checkpoint is loaded (a run starting at step 0 removes it). A best recorded
after that checkpoint stands: validations up to its step neither replace it nor rewrite its folder. The same resume
replays those steps identically (data order and dropout depend on the step alone), so the resumed run ends with the
uninterrupted run's adapter; one that changes the schedule's length or the world size keeps the best found before
the kill. A non-finite val/loss is never the best. A resume may therefore not change `vlm.eval_every`
under keep_best (which validations exist decides the adapter), nor end before the recorded best step.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

from ...core.checkpoint import step_tag
from ...core.distributed import DistEnv, all_gather_object
from ...core.errors import ConfigError
from ...core.files import load_yaml
from ...core.provenance import read_record, write_record

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger(__name__)

BEST_RECORD = "best.json"
BEST_PREFIX = "adapter-best-"
LAST_ADAPTER = "adapter-last"
ADAPTER = "adapter"
NEEDS_EVAL = ("vlm.keep_best=true picks the adapter of the validation with the lowest val/loss, so it needs "
              "vlm.eval_every (validations during training)")


def check_keep_best(cfg: "Config") -> None:
    """The config alone: keep_best needs vlm.eval_every."""
    if cfg.vlm.keep_best and not cfg.vlm.eval_every:
        raise ConfigError(f"{NEEDS_EVAL}, and vlm.eval_every is unset; set vlm.eval_every=N or vlm.keep_best=false")


def check_keep_best_resume(cfg: "Config", total_steps: int) -> None:
    """`run.resume=true` under keep_best: the stored run's vlm.eval_every unchanged (core.recipe allows a cadence
    change otherwise), and the recorded best within this run's steps. Reads only."""
    run_dir = Path(cfg.run.dir)
    stored = run_dir / "config.yaml"
    if not cfg.run.resume or not stored.is_file():
        return
    old = (load_yaml(stored) or {}).get("vlm") or {}
    if (cfg.vlm.keep_best or old.get("keep_best")) and old.get("eval_every") != cfg.vlm.eval_every:
        raise ConfigError(f"vlm.eval_every: {run_dir} was fine-tuned with vlm.eval_every={old.get('eval_every')} "
                          f"and vlm.keep_best=true, where the validations decide which adapter the run keeps; resume "
                          f"with vlm.eval_every={old.get('eval_every')}, or start a new run under another run.name")
    try:
        best = read_best(run_dir) if cfg.vlm.keep_best else None
        best_step = int(best["step"]) if best is not None else None
    except (OSError, ValueError, KeyError, TypeError) as err:  # torn by a kill, or edited by hand
        raise ConfigError(unreadable_record(run_dir, err)) from None
    if best is not None and best_step > total_steps:
        raise ConfigError(f"vlm.max_steps / vlm.epochs: this resume ends at step {total_steps}, but {run_dir} already "
                          f"holds its best adapter (vlm.keep_best) from step {best['step']}; train to step "
                          f"{best['step']} or more, or start a new run under another run.name")


def unreadable_record(run_dir: Path, err: BaseException) -> str:
    return f"{Path(run_dir) / BEST_RECORD} cannot be read ({err!r}): delete it to forget the best so far"


def read_best(run_dir: Path) -> Optional[Dict[str, Any]]:
    """The best validation recorded in `run_dir` ({step, val/loss, folder}), None when none (or its folder is gone)."""
    path = Path(run_dir) / BEST_RECORD
    if not path.is_file():
        return None
    record = read_record(path)
    if not (Path(run_dir) / record["folder"] / "adapter_model.safetensors").is_file():
        log.warning("%s names %s, which holds no adapter: the best so far is forgotten", path, record["folder"])
        return None
    return record


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class BestAdapter:
    """The best validation of a run so far and its adapter folder. `save(folder)` is the recipe's collective
    adapter save: every rank calls `restore`, `see` and `publish`; rank 0 alone touches the record."""

    def __init__(self, run_dir: Path, env: DistEnv, save: Callable[[Path], Path]):
        self.run_dir, self.env, self.save = Path(run_dir), env, save
        self.record: Optional[Dict[str, Any]] = None

    def restore(self, resumed_at: Optional[int]) -> None:
        """Read the record back after a checkpoint was loaded (`resumed_at`: its step); forget it on a start at
        step 0. Rank 0's view is every rank's (the folder need not be shared)."""
        record, error = None, None
        if self.env.is_main and resumed_at is not None:
            try:
                record = read_best(self.run_dir)
            except (OSError, ValueError, KeyError, TypeError) as err:  # every rank raises, none waits in the gather
                error = unreadable_record(self.run_dir, err)
        self.record, error = all_gather_object(self.env, (record, error))[0]
        if error:
            raise RuntimeError(error)
        if self.env.is_main:
            if self.record is None:
                (self.run_dir / BEST_RECORD).unlink(missing_ok=True)
            self._remove_stray()
        if self.record is not None and resumed_at is not None and self.record["step"] > resumed_at:
            log.info("best val/loss %.6g recorded at step %d, after the checkpoint of step %d: the replayed steps "
                     "reach it again", self.record["val/loss"], self.record["step"], resumed_at)

    def see(self, step: int, metrics: Dict[str, float]) -> Dict[str, float]:
        """After a validation: a strictly lower val/loss becomes the best (adapter saved, record written).
        Returns best/val_loss and best/step, for the tracker."""
        loss = metrics.get("val/loss")
        if self.record is not None and step <= self.record["step"]:
            # a resume replaying steps up to a best recorded after its checkpoint: that best stands and its folder
            # is never rewritten (a resume may change the schedule's length or the world size, so the replay need
            # not be bit-identical); nothing of it is logged before the step it was found at
            return self.metrics() if step == self.record["step"] else {}
        if loss is not None and math.isfinite(loss) and (self.record is None or loss < self.record["val/loss"]):
            folder = BEST_PREFIX + step_tag(step)
            self.save(self.run_dir / folder)
            self.record = {"step": step, "val/loss": loss, "folder": folder}
            if self.env.is_main:
                write_record(self.run_dir / BEST_RECORD, self.record)
                self._remove_stray()
        return self.metrics()

    def metrics(self) -> Dict[str, float]:
        if self.record is None:
            return {}
        return {"best/val_loss": float(self.record["val/loss"]), "best/step": float(self.record["step"])}

    def publish(self, last_dir: Path) -> Path:
        """`<run>/adapter/` made the best folder's copy (rank 0); returns it. With no finite val/loss there is no
        best: the copy is of `last_dir` (the last step's adapter), with a warning."""
        out = self.run_dir / ADAPTER
        if self.env.is_main:
            source = self.run_dir / self.record["folder"] if self.record else Path(last_dir)
            tmp = self.run_dir / (ADAPTER + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.copytree(source, tmp, copy_function=_link_or_copy)
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
            if self.record is None:
                log.warning("vlm.keep_best: no validation gave a finite val/loss, so there is no best: adapter/ is "
                            "the last step's")
            else:
                log.info("adapter: the best validation's (step %d, val/loss %.6g); the last step's is in %s/",
                         self.record["step"], self.record["val/loss"], LAST_ADAPTER)
        return out

    def _remove_stray(self) -> None:
        keep = self.record["folder"] if self.record else None
        for path in self.run_dir.glob(BEST_PREFIX + "step-*"):
            if path.name != keep:
                shutil.rmtree(path, ignore_errors=True)
