"""Waiting on a process the test started: for a state (a file, a log line), never for a time."""
from __future__ import annotations

import subprocess
from typing import Callable


def wait_until(reached: Callable[[], bool], proc: subprocess.Popen, what: str, output: Callable[[], str]) -> None:
    """Return once `reached()` holds; fail naming `what` and the end of `output()` if `proc` ends first."""
    while not reached():
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the process ended (code {proc.returncode}) before {what}:\n{output()[-4000:]}")
