"""What Ray Tune's loop does with signals, for tests of the searches' and studies' graceful stop."""
from __future__ import annotations

import os
import signal


def install_tune_like_handler(stopped: list) -> None:
    """What Ray's `tune.run` does when its loop starts: SIGUSR1 (and SIGINT, unless told not to) ask it to stop;
    each signal received is appended to `stopped`."""

    def tune_stop(signum, frame):
        stopped.append(signum)

    signal.signal(signal.SIGUSR1, tune_stop)
    if os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") != "1":
        signal.signal(signal.SIGINT, tune_stop)
