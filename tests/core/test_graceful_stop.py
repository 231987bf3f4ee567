"""`core.signals.GracefulStop` turns the first SIGTERM into a request the training loop honours at its next step
(tests/recipes/fusion/test_sigterm_checkpoint.py runs it end to end). Inside a Ray worker it must stand aside: Ray
kills a stopped trial or a lost driver's workers with SIGTERM and then SIGKILL soon after, so a run that went on
to its next step and a checkpoint was SIGKILLed before it closed, and its MLflow run stayed RUNNING (seen in the
two-node Ray test after a driver kill)."""
from __future__ import annotations

import signal
import types

import pytest

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.signals import REPEAT_AFTER_S, GracefulStop, Terminated, sigterm_as_interrupt


def test_the_first_sigterm_asks_the_second_stops_and_the_handler_comes_back():
    with sigterm_as_interrupt():
        before = signal.getsignal(signal.SIGTERM)
        with GracefulStop() as stop:
            signal.raise_signal(signal.SIGTERM)
            assert stop.requested and stop.agreed(DistEnv())
            stop.first_at -= REPEAT_AFTER_S  # a second SIGTERM that comes later
            with pytest.raises(Terminated):
                signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) == before


def test_a_launchers_forwarded_copy_of_the_sigterm_is_not_a_second_one(monkeypatch):
    """Slurm signals every process of the job, and torchrun (the DeepSpeed launcher likewise) forwards the SIGTERM
    it got to its ranks: each rank received two within milliseconds, and the second ended it at once, without the
    checkpoint the first had asked for. A repeat within `REPEAT_AFTER_S` of the first is the same request; a later
    one (an impatient user or scheduler) still stops at once."""
    from mmlnb_dist.core import signals

    now = [1000.0]
    monkeypatch.setattr(signals.time, "monotonic", lambda: now[0])
    with sigterm_as_interrupt():
        with GracefulStop() as stop:
            signal.raise_signal(signal.SIGTERM)
            now[0] += 0.005
            signal.raise_signal(signal.SIGTERM)  # the launcher's copy: raised Terminated
            assert stop.requested
            now[0] += REPEAT_AFTER_S
            with pytest.raises(Terminated):
                signal.raise_signal(signal.SIGTERM)


def test_in_a_ray_worker_a_sigterm_stops_at_once(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "ray", types.SimpleNamespace(is_initialized=lambda: True))
    with sigterm_as_interrupt():
        with GracefulStop() as stop, pytest.raises(Terminated):
            signal.raise_signal(signal.SIGTERM)
        assert not stop.requested


def test_stop_if_asked_saves_unless_the_checkpoint_is_written_and_raises():
    saved = []
    stop = GracefulStop()
    stop.stop_if_asked(DistEnv(), lambda: saved.append(1), "at step 1")  # not asked: nothing
    stop.requested = True
    with pytest.raises(Terminated, match="at step 2"):
        stop.stop_if_asked(DistEnv(), lambda: saved.append(2), "at step 2")
    with pytest.raises(Terminated):
        stop.stop_if_asked(DistEnv(), None, "at step 3")  # the periodic checkpoint of this step is written
    assert saved == [2]
