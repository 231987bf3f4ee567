"""Outside the training loop's graceful stop (setup, evaluation, export, `describe`), a stop signal ends a command
through `sigterm_as_interrupt` as Ctrl-C does, and its cleanup (the MLflow run closed as KILLED, locks released,
exit code 130) runs. But a rank gets the signal twice within milliseconds: the scheduler (or a launch/ wrapper)
signals the launcher and the ranks, and torchrun or the DeepSpeed launcher forwards its copy. The copy found the
default handler and ended the rank by SIGTERM in its cleanup (or, nested, raised again in it). A copy within
`REPEAT_AFTER_S` of the first is now the same request, as `GracefulStop` takes it; a later one still ends the
process at once."""
from __future__ import annotations

import subprocess
import sys

from support.launch_wrappers import ROOT

PROLOGUE = """
import signal, sys, threading
from mmlnb_dist.core import signals
from mmlnb_dist.core.signals import Terminated, sigterm_as_interrupt
me = threading.get_ident()
now = [1000.0]
signals.time.monotonic = lambda: now[0]
"""


def _run(body: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROLOGUE + body], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_the_launchers_copy_does_not_cut_the_cleanup_short():
    done = _run("""
try:
    with sigterm_as_interrupt():  # the CLI's
        try:
            with sigterm_as_interrupt():  # the recipe's
                signal.pthread_kill(me, signal.SIGTERM)  # the scheduler's
        finally:
            now[0] += 0.02
            signal.pthread_kill(me, signal.SIGTERM)  # the launcher's copy, during the cleanup
            print("cleanup finished", flush=True)
except Terminated:
    sys.exit(130)
""")
    assert done.returncode == 130 and "cleanup finished" in done.stdout, (done.returncode, done.stderr[-2000:])


def test_a_copy_inside_the_block_is_taken_once():
    done = _run("""
with sigterm_as_interrupt():
    try:
        signal.pthread_kill(me, signal.SIGTERM)
    except Terminated:
        now[0] += 0.02
        signal.pthread_kill(me, signal.SIGTERM)  # the copy: neither raised again nor the default
        print("cleanup finished", flush=True)
""")
    assert done.returncode == 0 and "cleanup finished" in done.stdout, (done.returncode, done.stderr[-2000:])


def test_a_second_signal_after_the_window_ends_the_process_at_once():
    done = _run("""
with sigterm_as_interrupt():
    try:
        signal.pthread_kill(me, signal.SIGTERM)
    except Terminated:
        now[0] += signals.REPEAT_AFTER_S
        signal.pthread_kill(me, signal.SIGTERM)  # an impatient second: the process ends
        print("still running", flush=True)
""")
    assert done.returncode == -15 and "still running" not in done.stdout, (done.returncode, done.stderr[-2000:])
