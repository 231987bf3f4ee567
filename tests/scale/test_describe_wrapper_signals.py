"""launch/describe.sh on several GPUs `exec`'d torchrun, so a signal to the wrapper reached torchrun alone: a
SIGUSR1/SIGUSR2 (a scheduler's warning, `kill -USR1 PID`) ended it by Python's default and left the ranks describing
on, orphaned. It now runs torchrun as the other wrappers run their launcher (common.sh, run_launcher): the signal
reaches torchrun and the ranks as the graceful stop, SIGTERM, and the wrapper returns 130 once they are gone."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from support.launch_wrappers import LAUNCH, REAL_PYTHON, WRAPPER_VARIABLES

PROBE = """#!/usr/bin/env bash
# torchrun says it is ready, then reports the signal that reaches it and exits.
if [[ "$1" == -c && "$2" == *device_count* ]]; then echo 0; exit 0; fi
if [[ "$1 $2" == "-m torch.distributed.run" ]]; then
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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=["TERM", "USR1"])
def test_a_signal_to_describe_sh_reaches_torchrun_as_the_graceful_stop(tmp_path, sig):
    probe = tmp_path / "probe"
    probe.write_text(PROBE.format(python=str(REAL_PYTHON)))
    probe.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k not in WRAPPER_VARIABLES}
    wrapper = subprocess.Popen(["bash", str(LAUNCH / "describe.sh"), "--adapter", "a", "--shards", "s", "--out", "o"],
                               cwd=tmp_path, env={**environ, "PYTHON": str(probe), "NUM_GPUS": "2"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wrapper.stdout.readline().strip() == "ready"
        wrapper.send_signal(sig)
        out, err = wrapper.communicate(timeout=60)
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
    assert out.strip() == "got SIGTERM", (out, err)
    assert wrapper.returncode == 130, err
    assert f"stopped by {sig.name}" in err, err
