"""What reaches the console of a command that runs its work in Ray processes (`tune`, `ablate` with
`tune.max_concurrent > 1`). Ray merges "similar" lines of different processes (equal once numbers are removed) into
one with "[repeated Nx across cluster]": two concurrent trials' epoch lines became one, the other trial's numbers
never shown. Into a file its prefixes carried colour codes."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

DRIVER = textwrap.dedent("""
    import sys, time
    from mmlnb_dist.core.logging import setup_logging

    setup_logging(0)  # as every command does first
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)

    @ray.remote(num_cpus=1)
    class Trial:  # an actor is a process of its own, as a trial is
        def epoch(self, loss):
            for epoch in range(3):
                print(f"[recipe] epoch {epoch}  loss {loss + epoch / 100:.4f}", file=sys.stderr, flush=True)
            return loss

    trials = [Trial.remote(), Trial.remote()]
    ray.get([t.epoch.remote(loss) for t, loss in zip(trials, (0.5, 0.7))])
    time.sleep(2)  # Ray forwards worker output every ~100 ms
    ray.shutdown()
""")


@pytest.mark.slow
def test_every_trials_lines_reach_the_console_uncoloured_and_unmerged(tmp_path):
    res = subprocess.run([sys.executable, "-c", DRIVER], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    console = res.stdout + res.stderr
    for loss in (0.5, 0.7):
        for epoch in range(3):
            assert f"[recipe] epoch {epoch}  loss {loss + epoch / 100:.4f}" in console, console[-3000:]
    assert "\x1b[" not in console and "repeated" not in console, console[-3000:]
