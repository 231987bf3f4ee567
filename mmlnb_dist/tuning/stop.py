"""Stopping a search: the first SIGINT (Ctrl-C) or SIGTERM (a scheduler, `kill`) asks Ray Tune to stop as its own
Ctrl-C handler does, and the driver knows the search was interrupted; a second one stops at once.

Ray's `tuner.fit()` catches SIGINT itself: it stops the trials, saves the experiment state and returns as if the
search had ended, with no word of the interruption, so the driver named a "best" of a partial search and closed the
parent run FINISHED. SIGTERM (raised by the CLI's `sigterm_as_interrupt` inside `tuner.fit()`) skipped that last
save: a trial started in the last ~10 s was forgotten, and on resume its folder was set aside as `*.lost-1`.

    with GracefulSearchStop() as stop:
        grid = tuner.fit()
    if stop.signal is not None: ...   # interrupted: Tune saved its state, resume with tune.resume=true
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any, Dict, Optional

from ..core.signals import Terminated

log = logging.getLogger(__name__)

QUIET_TUNE_SIGINT = "TUNE_DISABLE_SIGINT_HANDLER"
"""Ray Tune's switch for its own SIGINT handler, read when `tuner.fit()` starts; its SIGUSR1 handler (the same
graceful stop) is always installed, and is what this module calls."""


RAY_STOP_NOTICES = ("Stop signal received", "Experiment has been interrupted, but the most recent state was saved")
"""Ray Tune's own warnings on a graceful stop (logger `ray.tune.tune`): the driver says the same in its words, and
Ray's second one tells the user to call `Tuner.restore(path=..., trainable=...)`, which the command does on
`tune.resume=true`. Dropped while a search runs (`GracefulSearchStop`)."""


class _DropRayStopNotices(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(RAY_STOP_NOTICES)


class SearchInterrupted(KeyboardInterrupt):
    """The search stopped before all its trials had run (a signal); its state is saved: `tune.resume=true` goes on.
    `summary` is what it left (`summary.json`, without a best), None when it stopped before its end."""

    def __init__(self, summary: Optional[Dict[str, Any]] = None):
        super().__init__("interrupted: resume with tune.resume=true")
        self.summary = summary


class GracefulSearchStop:
    """While `tuner.fit()` runs, SIGINT and SIGTERM go through Tune's graceful stop, and `signal` records which came
    first (None: none). A signal before Tune's loop has installed its handler, or a second signal, stops at once
    (`KeyboardInterrupt`; `Terminated` for SIGTERM), as before. Outside the main thread it does nothing."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None
        self._previous: Dict[int, Any] = {}
        self._env: Optional[str] = None
        self._usr1: Any = None
        self._notices = _DropRayStopNotices()

    def __enter__(self) -> "GracefulSearchStop":
        if threading.current_thread() is not threading.main_thread():
            return self
        # Tune's own SIGINT handler would take Ctrl-C without telling anyone: this one takes it, then asks Tune
        self._env = os.environ.get(QUIET_TUNE_SIGINT)
        os.environ[QUIET_TUNE_SIGINT] = "1"
        self._usr1 = signal.getsignal(signal.SIGUSR1)
        self._previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        logging.getLogger("ray.tune.tune").addFilter(self._notices)
        return self

    def _handle(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        tune_stop = signal.getsignal(signal.SIGUSR1)
        if self.signal is not None or not callable(tune_stop) or tune_stop is self._usr1:
            # a second signal, or Tune's loop is not running (its handler is not installed yet): stop now
            if signum == signal.SIGTERM:
                raise Terminated(f"signal {signum}")
            raise KeyboardInterrupt
        self.signal = signum
        log.warning("%s received: stopping the search; Ray Tune ends the running trials and saves its state (resume "
                    "with tune.resume=true; another %s stops at once)", name, name)
        tune_stop(signal.SIGUSR1, frame)

    def __exit__(self, *exc) -> None:
        if not self._previous:
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        logging.getLogger("ray.tune.tune").removeFilter(self._notices)
        # Tune leaves its SIGUSR1 handler installed after fit(): a later SIGUSR1 would set an event nobody reads
        if self._usr1 is not None:  # (None: not set from Python; nothing to put back)
            signal.signal(signal.SIGUSR1, self._usr1)
        if self._env is None:
            os.environ.pop(QUIET_TUNE_SIGINT, None)
        else:
            os.environ[QUIET_TUNE_SIGINT] = self._env
