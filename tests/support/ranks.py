"""Run a small script as several ranks of one gloo process group (separate processes, as a launcher would)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

from mmlnb_dist.core.tracking.server import free_port

ROOT = Path(__file__).resolve().parents[2]


def run_ranks(code: str, args_for_rank: Callable[[int], Sequence[object]], world_size: int = 2,
              timeout: int = 300) -> None:
    """`python -c code RANK *args_for_rank(RANK)` for every rank, with the rendezvous variables set; asserts
    every rank exited 0."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(r), *map(str, args_for_rank(r))], cwd=ROOT, env=env)
             for r in range(world_size)]
    assert [p.wait(timeout=timeout) for p in procs] == [0] * world_size


def port_is_free(port: int) -> bool:
    """Nothing listens on `port` of this machine (a launcher's rendezvous port left for another job)."""
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True
