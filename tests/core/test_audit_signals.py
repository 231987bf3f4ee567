"""Mutation-audit gaps of core.signals: `sigterm_as_interrupt` puts the previous handler back and leaves a second
SIGTERM to the default (the process ends); `sigterm_handler_kept` undoes a library's replacement (Ray's); both do
nothing outside the main thread; a driver that merely imported Ray still gets the graceful stop; and under a launcher
one rank's request stops every rank (the request is all-reduced)."""
from __future__ import annotations

import json
import signal
import sys
import threading
import types
from pathlib import Path

import pytest

from mmlnb_dist.core.signals import GracefulStop, Terminated, sigterm_as_interrupt, sigterm_handler_kept

from support.ranks import run_ranks


def _mine(signum, frame):  # a handler of the host application's
    pass


@pytest.fixture
def own_handler():
    previous = signal.signal(signal.SIGTERM, _mine)
    yield
    signal.signal(signal.SIGTERM, previous)


def test_sigterm_as_interrupt_restores_the_handler_and_a_second_sigterm_gets_the_default(own_handler):
    with sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not _mine
        with pytest.raises(Terminated):
            signal.raise_signal(signal.SIGTERM)
        # a launcher's copy at once is the same request: not raised as Terminated again; an impatient second one
        # (REPEAT_AFTER_S later) ends the process for good (tests/core/test_signal_copies_during_cleanup.py)
        signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is _mine


def test_sigterm_handler_kept_undoes_a_librarys_replacement(own_handler):
    with sigterm_handler_kept():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # what `ray.init` does to the driver
    assert signal.getsignal(signal.SIGTERM) is _mine


def test_outside_the_main_thread_nothing_is_installed(own_handler):
    errors = []

    def worker():
        try:
            with sigterm_as_interrupt(), GracefulStop(), sigterm_handler_kept():
                pass
        except Exception as err:  # noqa: BLE001  (signal.signal raises ValueError outside the main thread)
            errors.append(err)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert errors == [] and signal.getsignal(signal.SIGTERM) is _mine


def test_a_driver_that_imported_ray_without_starting_it_still_stops_gracefully(monkeypatch, own_handler):
    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: False))
    with GracefulStop() as stop:
        signal.raise_signal(signal.SIGTERM)  # asks; does not raise
        assert stop.requested
    assert signal.getsignal(signal.SIGTERM) is _mine


RANK = """
import json, sys, torch.distributed as dist
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.signals import GracefulStop, Terminated
rank, out = int(sys.argv[1]), sys.argv[2]
dist.init_process_group("gloo", rank=rank, world_size=2)
env, stop, saved, stopped = DistEnv(rank=rank, world_size=2), GracefulStop(), [], None
for step in range(1, 6):
    stop.requested = stop.requested or (rank == 1 and step == 3)  # rank 1 alone got the SIGTERM
    try:
        stop.stop_if_asked(env, lambda: saved.append(step), f"at step {step}")
    except Terminated:
        stopped = step
        break
json.dump([stopped, saved], open(out, "w"))
dist.destroy_process_group()
"""


def test_one_ranks_request_stops_every_rank_at_the_same_step_with_its_checkpoint(tmp_path):
    outs = [tmp_path / f"rank{r}.json" for r in range(2)]
    run_ranks(RANK, lambda r: (outs[r],))
    assert [json.loads(Path(o).read_text()) for o in outs] == [[3, [3]], [3, [3]]]
