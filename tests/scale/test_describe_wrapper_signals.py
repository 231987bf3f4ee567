"""launch/describe.sh on several GPUs `exec`'d torchrun, so a signal to the wrapper reached torchrun alone: a
SIGUSR1/SIGUSR2 (a scheduler's warning, `kill -USR1 PID`) ended it by Python's default and left the ranks describing
on, orphaned. It now runs torchrun as the other wrappers run their launcher (common.sh, run_launcher): the signal
reaches torchrun and the ranks as the graceful stop, SIGTERM, and the wrapper returns 130 once they are gone."""
from __future__ import annotations

import signal

import pytest

from support.launch_wrappers import signal_wrapper


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=["TERM", "USR1"])
def test_a_signal_to_describe_sh_reaches_torchrun_as_the_graceful_stop(tmp_path, sig):
    out, err, code = signal_wrapper(tmp_path, "describe.sh", ["--adapter", "a", "--shards", "s", "--out", "o"],
                                    "torch.distributed.run", sig, NUM_GPUS="2")
    assert out.strip() == "got SIGTERM", (out, err)
    assert code == 130, err
    assert f"stopped by {sig.name}" in err, err
