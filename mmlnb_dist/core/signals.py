"""SIGTERM as a KeyboardInterrupt, so a terminated run ends like an interrupted one.

Schedulers (Slurm, Kubernetes, Ray, the DeepSpeed launcher when a peer dies) stop a job with SIGTERM. Python's
default for it is to die at once: no `finally`, no `cleanup("KILLED")`, and the MLflow run stays RUNNING forever.
Inside `sigterm_as_interrupt()` SIGTERM raises `Terminated` (a `KeyboardInterrupt`), so `core.recipe.run` closes
the run as KILLED exactly as it does for Ctrl-C:

    with sigterm_as_interrupt():
        recipe.setup(); recipe.train()          # SIGTERM -> Terminated -> cleanup("KILLED")

SIGUSR1 and SIGUSR2 are taken the same way: a scheduler's warning before its time limit (Slurm
`#SBATCH --signal=USR1@120`, the form PyTorch Lightning's Slurm users know; LSF, PBS) means "checkpoint and stop",
and Python's default for them ended the process at once.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterator, Optional

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
"""The signals that stop a run the way SIGTERM does (the launch/ wrappers forward USR1/USR2 as SIGTERM)."""


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (raised in the main thread by `sigterm_as_interrupt`)."""


def _raise_terminated(signum, frame) -> None:
    """A stop signal outside a `sigterm_as_interrupt` block's handler (GracefulStop's impatient second one):
    `Terminated`, and the default for a third."""
    signal.signal(signum, signal.SIG_DFL)
    _terminate(signum)


def _terminate(signum) -> None:
    log.warning("%s received: stopping, as Ctrl-C would (a tracked run ends as KILLED)", signal.Signals(signum).name)
    raise Terminated(f"signal {signum}")


class _InterruptOnStop:
    """The handler of an outermost `sigterm_as_interrupt` block: the first stop signal raises `Terminated`; a repeat
    within `REPEAT_AFTER_S` is a launcher's copy of it (torchrun and the DeepSpeed launcher forward the scheduler's
    signal to ranks it signalled too), ignored so that the cleanup runs to its end (the default ended the rank in
    it); a later one (an impatient user or scheduler) ends the process for good, as the default does."""

    def __init__(self) -> None:
        self.since: Optional[float] = None
        """When the first stop signal came (`time.monotonic()`); None: not yet."""

    def __call__(self, signum, frame) -> None:
        if self.since is None:
            self.since = time.monotonic()
            _terminate(signum)
        if time.monotonic() - self.since >= REPEAT_AFTER_S:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (and SIGUSR1/2, `STOP_SIGNALS`) into `Terminated` while the block runs; the previous handlers
    come back afterwards. A repeat within `REPEAT_AFTER_S` of the first (a launcher's copy) is ignored, so the
    cleanup that `Terminated` starts runs to its end; a later one ends the process at once. A block inside another
    keeps the outer one's handler (and its memory of a first signal).

    Does nothing outside the main thread (Python only lets the main thread set handlers; a Ray or Tune worker
    thread keeps its host's handling)."""
    if threading.current_thread() is not threading.main_thread() or \
            isinstance(signal.getsignal(signal.SIGTERM), _InterruptOnStop):
        yield
        return
    handler = _InterruptOnStop()
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


@contextlib.contextmanager
def sigterm_handler_kept() -> Iterator[None]:
    """Keep this process's SIGTERM handling across the block, around `ray.init`: Ray replaces it (its own
    `sys.exit`, then its core worker's handler, which prints a C++ stack trace and aborts), so a `tune` driver that a
    scheduler or `kill` stopped dumped a stack and exited 134 instead of ending "interrupted" (exit 130) with its
    MLflow run closed. Outside the main thread, or when the handler was not set from Python, Ray's stays."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def _in_ray_worker() -> bool:
    """Ray stops its workers itself (a trial stopped early, a lost driver: SIGTERM, then SIGKILL soon after) and
    restores trials from Tune's checkpoints; there a SIGTERM must end the run at once (`sigterm_as_interrupt`), or
    the SIGKILL lands before the run is closed and its MLflow run stays RUNNING."""
    ray = sys.modules.get("ray")
    return bool(ray is not None and ray.is_initialized())


REPEAT_AFTER_S = 5.0
"""A SIGTERM within this many seconds of the first is the same request: a launcher (torchrun, the DeepSpeed launcher)
forwards the scheduler's SIGTERM to ranks that the scheduler signalled already."""


class GracefulStop:
    """While entered, the first SIGTERM (or SIGUSR1/2) only asks the training loop to stop: it checks `agreed(env)`
    at each optimizer step, every rank stops at the same step, saves a checkpoint there and raises `Terminated`, so a
    scheduler's time limit or a preemption loses no trained step. A second SIGTERM stops at once (`Terminated`),
    unless it comes within `REPEAT_AFTER_S` of the first (a launcher forwarding the scheduler's signal).

    Slurm sends SIGTERM, then SIGKILL after its KillWait (30 s by default): `#SBATCH --signal=TERM@120` (or a longer
    KillWait) leaves the step and the save time to finish. Outside the main thread, and in a Ray worker (a Tune
    trial), it does nothing."""

    def __init__(self) -> None:
        self.requested = False
        self.first_at: Optional[float] = None
        """When the first SIGTERM came (`time.monotonic()`)."""
        self._previous = None
        self._installed = False

    def _ask(self, signum, frame) -> None:
        if self.requested:
            if time.monotonic() - (self.first_at or 0.0) < REPEAT_AFTER_S:
                return  # the launcher's copy of the scheduler's SIGTERM, not an impatient second one
            outer = (self._previous or {}).get(signum)  # an enclosing block's handler remembers this second one
            (outer if isinstance(outer, _InterruptOnStop) and outer.since is None else _raise_terminated)(signum, frame)
        self.requested, self.first_at = True, time.monotonic()
        log.warning("%s received: stopping after the current optimizer step, with a checkpoint there (a SIGTERM, "
                    "%.0f s or more later, stops at once)", signal.Signals(signum).name, REPEAT_AFTER_S)

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread() and not _in_ray_worker():
            self._previous = {sig: signal.signal(sig, self._ask) for sig in STOP_SIGNALS}
            self._installed = True
        return self

    def __exit__(self, *exc) -> None:
        if self._installed:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)
            self._installed = False

    def agreed(self, env) -> bool:
        """Whether any rank was asked to stop (collective under a launcher: every rank calls it at the same step,
        and all of them get the same answer)."""
        if not env.is_distributed:
            return self.requested
        import torch

        from .distributed import all_reduce_sum

        return bool(all_reduce_sum(env, torch.tensor([float(self.requested)], device=env.device)).item() > 0)

    def stop_if_asked(self, env, save: Optional[Callable[[], Any]], where: str) -> None:
        """Collective, like `agreed`: when any rank was asked to stop, write the checkpoint of this point with
        `save` (None: it is already written) and raise `Terminated`; otherwise nothing."""
        if self.agreed(env):
            if save is not None:
                save()
            log.warning("SIGTERM: stopped %s, checkpointed (run.resume=true continues from there)", where)
            raise Terminated(f"SIGTERM: stopped {where}")
