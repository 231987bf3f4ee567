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
from mmlnb_dist.core.signals import GracefulStop, Terminated, sigterm_as_interrupt


def test_the_first_sigterm_asks_the_second_stops_and_the_handler_comes_back():
    with sigterm_as_interrupt():
        before = signal.getsignal(signal.SIGTERM)
        with GracefulStop() as stop:
            signal.raise_signal(signal.SIGTERM)
            assert stop.requested and stop.agreed(DistEnv())
            with pytest.raises(Terminated):
                signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) == before


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
