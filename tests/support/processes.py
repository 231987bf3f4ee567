"""Waiting on a process the test started: for a state (a file, a log line), never for a time."""
from __future__ import annotations

import os
import signal
import subprocess
from typing import Any, Callable, Sequence


def wait_until(reached: Callable[[], bool], proc: subprocess.Popen, what: str, output: Callable[[], str]) -> None:
    """Return once `reached()` holds; fail naming `what` and the end of `output()` if `proc` ends first."""
    while not reached():
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the process ended (code {proc.returncode}) before {what}:\n{output()[-4000:]}")


def run_group(cmd: Sequence[str], *, timeout: float, **kwargs: Any) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, capture_output=True, text=True, timeout=...)` for a launcher (torchrun) in a session of
    its own: past `timeout` its whole process group is killed, ranks included. `subprocess.run` kills only the
    launcher, and ranks left waiting in a collective outlive the test (they ignore an outsider's SIGTERM) and slow
    every test after it on a 2-core machine."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, output=stdout, stderr=stderr) from None
    finally:
        if proc.poll() is None:  # (an exception other than the timeout: KeyboardInterrupt)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
