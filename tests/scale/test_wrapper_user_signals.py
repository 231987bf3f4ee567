"""A SIGUSR1 or SIGUSR2 to a launch/ wrapper (a scheduler's warning signal: Slurm `--signal=USR1@120`, LSF, PBS,
or `kill -USR1 PID`) killed the wrapper alone (bash's default, exit 138): the launcher runs in a process group of
its own (common.sh, run_launcher), so it and the ranks trained on, orphaned, with nobody waiting for them. The
wrapper now forwards it as the graceful stop, SIGTERM (forwarded as is, it would kill the ranks without a step
checkpoint: Python's default for SIGUSR1), and returns 130 once the launcher is gone."""
from __future__ import annotations

import signal

import pytest

from support.launch_wrappers import signal_wrapper


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2], ids=["USR1", "USR2"])
def test_a_user_signal_to_the_wrapper_stops_the_launcher_gracefully(tmp_path, sig):
    out, err, code = signal_wrapper(tmp_path, "train_node.sh", ["data.shards=empty"], "deepspeed.launcher.runner",
                                    sig, NUM_GPUS="1")
    assert out.strip() == "got SIGTERM", (out, err)
    assert code == 130, err
    assert f"stopped by {sig.name}" in err, err
