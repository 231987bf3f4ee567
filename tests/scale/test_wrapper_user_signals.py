"""A SIGUSR1 or SIGUSR2 to a launch/ wrapper (a scheduler's warning signal: Slurm `--signal=USR1@120`, LSF, PBS,
or `kill -USR1 PID`) killed the wrapper alone (bash's default, exit 138): the launcher runs in a process group of
its own (common.sh, run_launcher), so it and the ranks trained on, orphaned, with nobody waiting for them. The
wrapper now forwards it as the graceful stop, SIGTERM (forwarded as is, it would kill the ranks without a step
checkpoint: Python's default for SIGUSR1), and returns 130 once the launcher is gone."""
from __future__ import annotations

import signal
import subprocess

import pytest

from support.launch_wrappers import LAUNCH, REAL_PYTHON, WRAPPER_VARIABLES

PROBE = """#!/usr/bin/env bash
# The DeepSpeed runner says it is ready, then reports the signal that reaches it and exits.
if [[ "$1" == -c && "$2" == *device_count* ]]; then echo 0; exit 0; fi
if [[ "$1 $2" == "-m deepspeed.launcher.runner" ]]; then
  exec {python} -c "import signal, sys, time
def got(signum, frame):
    print('got', signal.Signals(signum).name, flush=True); sys.exit(1)
for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(s, got)
print('ready', flush=True)
time.sleep(60)"
fi
exec {python} "$@"
"""


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2], ids=["USR1", "USR2"])
def test_a_user_signal_to_the_wrapper_stops_the_launcher_gracefully(tmp_path, sig):
    import os

    probe = tmp_path / "probe"
    probe.write_text(PROBE.format(python=str(REAL_PYTHON)))
    probe.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k not in WRAPPER_VARIABLES}
    wrapper = subprocess.Popen(["bash", str(LAUNCH / "train_node.sh"), "data.shards=empty"], cwd=tmp_path,
                               env={**environ, "PYTHON": str(probe), "NUM_GPUS": "1"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert wrapper.stdout.readline().strip() == "ready"
        wrapper.send_signal(sig)
        out, err = wrapper.communicate(timeout=15)
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
    assert out.strip() == "got SIGTERM", (out, err)
    assert wrapper.returncode == 130, err
    assert f"stopped by {sig.name}" in err, err
