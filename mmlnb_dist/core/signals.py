"""SIGTERM as a KeyboardInterrupt, so a terminated run ends like an interrupted one.

Schedulers (Slurm, Kubernetes, Ray, the DeepSpeed launcher when a peer dies) stop a job with SIGTERM. Python's
default for it is to die at once: no `finally`, no `cleanup("KILLED")`, and the MLflow run stays RUNNING forever.
Inside `sigterm_as_interrupt()` SIGTERM raises `Terminated` (a `KeyboardInterrupt`), so `core.recipe.run` closes
the run as KILLED exactly as it does for Ctrl-C:

    with sigterm_as_interrupt():
        recipe.setup(); recipe.train()          # SIGTERM -> Terminated -> cleanup("KILLED")
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Iterator

log = logging.getLogger(__name__)


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM (raised in the main thread by `sigterm_as_interrupt`)."""


def _raise_terminated(signum, frame) -> None:
    # Restore the default first: a second SIGTERM (an impatient scheduler) ends the process for good.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log.warning("SIGTERM received: stopping the run (it ends as KILLED)")
    raise Terminated(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` while the block runs; the previous handler comes back afterwards.

    Does nothing outside the main thread (Python only lets the main thread set handlers; a Ray or Tune worker
    thread keeps its host's handling)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
