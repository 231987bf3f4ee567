"""`support.processes.run_group`, the way tests run a launcher (torchrun): past its timeout the launcher's children
die with it. With `subprocess.run` only the launcher was killed and its ranks ran on for half an hour, slowing every
test after it."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from support.processes import run_group


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed child not yet reaped by its (dead) parent is a zombie: dead for this purpose
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_launcher_past_its_timeout_takes_its_children_with_it(tmp_path):
    pid_file = tmp_path / "child.pid"
    launcher = ("import subprocess, sys, time; "
                "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
                f"open({str(pid_file)!r}, 'w').write(str(child.pid)); time.sleep(300)")
    with pytest.raises(subprocess.TimeoutExpired):
        run_group([sys.executable, "-c", launcher], timeout=5)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def test_a_finished_launcher_gives_its_code_and_output():
    proc = run_group([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                     timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "out\n", "err\n")
