"""A reader that leaves before the output ends (`mmlnb-dist config explain | head -c 100`, a pager quit early)
ended the command with a BrokenPipeError traceback on stderr (and, at exit, "Exception ignored ... BrokenPipeError").
The command now ends quietly with the exit code of a program stopped by SIGPIPE (141), as `yes | head` does."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_closed_stdout_ends_the_command_quietly():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "mmlnb_dist.cli", "config", "explain"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
