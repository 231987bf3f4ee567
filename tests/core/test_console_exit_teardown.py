"""A rank that finished its command must not die in the interpreter's teardown (issue 14's CI drill: a 2-process
ZeRO-3 `finetune-vlm` wrote its adapter, then rank 1 aborted at exit, "terminate called without an active
exception", and torchrun reported the run failed).

DeepSpeed keeps the process groups alive after `destroy_process_group` (its module-level world group, the engine's
parameters), so gloo's threads are still running when the interpreter tears itself down. The stand-in here: a
command that made a process group and left an object whose teardown aborts the process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = r"""
import atexit, os, sys
from pathlib import Path

import torch.distributed as dist

from mmlnb_dist import cli

out = Path(sys.argv[1])


class AbortsInTeardown:
    def __del__(self):
        os.abort()  # what gloo's threads, joinable at exit, do to a finished rank


def command():
    dist.init_process_group("gloo", init_method=f"file://{out / 'store'}", rank=0, world_size=1)
    if sys.argv[3] == "abort":
        sys.modules["__main__"].left_behind = AbortsInTeardown()
    atexit.register(lambda: (out / "atexit-ran").write_text("yes"))  # e.g. MLflow's flush of async logging
    print("result line", end="")  # unflushed: the last line of a command's output must still arrive
    return int(sys.argv[2])


cli.main = command
cli.console()
"""


def _run(tmp_path, code: int, teardown: str = "abort") -> subprocess.CompletedProcess:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(script), str(tmp_path), str(code), teardown], capture_output=True, text=True,
                          env=env, timeout=300)


def test_a_finished_distributed_command_exits_with_its_code_whatever_the_teardown_would_do(tmp_path):
    proc = _run(tmp_path, 0)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout == "result line"
    assert (tmp_path / "atexit-ran").read_text() == "yes"  # exit handlers still run, only the teardown is skipped


def test_a_failed_command_keeps_its_code_and_its_exit_handlers(tmp_path):
    """A failed command leaves its groups (another rank may be inside a collective) and exits with its own code;
    the skip is only for a command that succeeded."""
    proc = _run(tmp_path, 3, teardown="clean")
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert (tmp_path / "atexit-ran").read_text() == "yes"
