"""An ordered map over a process pool that stops with its caller: the synthetic generator's patches, rendered in
worker processes, in order."""
from __future__ import annotations

import contextlib
import signal
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..core.signals import STOP_SIGNALS


def _worker_signals() -> None:
    """A pool worker's signal handling: Ctrl-C (sent to the whole process group) is its parent's to act on, and the
    stop signals are at their defaults, so that the parent's `terminate()` ends the worker quietly (a forked worker
    inherits the CLI's handler, which raised `Terminated` in each worker and printed its traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


@contextlib.contextmanager
def ordered_process_map(func: Callable[[Any], Any], jobs: Sequence[Any], workers: int,
                        chunksize: int = 8) -> Iterator[Iterable[Any]]:
    """`func` over `jobs`, in order, in `workers` forked processes (in this one for `workers <= 1`). Fork is the
    cheap start method and safe for callers that hold no threads' locks yet. When the block ends by an exception
    (Ctrl-C, SIGTERM as `Terminated`, a failed job) the workers are ended at once: closing the pool let them render
    every job still queued (minutes for `data synth --n 400000`) before the command could stop."""
    if workers <= 1:
        yield map(func, jobs)
        return
    from multiprocessing import get_context

    # the pool's exit terminates its workers (and waits for them): at once on a stop, and idle ones once every
    # result has been read
    with get_context("fork").Pool(workers, initializer=_worker_signals) as pool:
        yield pool.imap(func, jobs, chunksize=chunksize)
