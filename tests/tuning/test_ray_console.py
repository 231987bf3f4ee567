"""What reaches the console of a command that runs its work in Ray processes (`tune`, `ablate` with
`tune.max_concurrent > 1`). Ray merges "similar" lines of different processes (equal once numbers are removed) into
one with "[repeated Nx across cluster]": two concurrent trials' epoch lines became one, the other trial's numbers
never shown. Into a file its prefixes carried colour codes, and Ray Train's helpers printed notices to themselves
once per trial."""
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

        def ray_notices(self):  # what Ray Train's helpers print on a busy machine, and one real problem
            import logging
            logging.basicConfig()
            logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").warning(
                "Failed to query Ray Train Controller actor state. State API may be temporarily unavailable. "
                "Continuing to monitor.")
            print("[2026-12-04 19:34:33,052 E 16749 16805] core_worker.cc:2465: Actor with class name: "
                  "'PreemptionWatcher' and ID: '5da5420dfdc68ffa840bbd9e01000000' has constructor arguments in the "
                  "object store and max_restarts > 0. If the arguments in the object store go out of scope or are "
                  "lost, the actor restart will fail.", file=sys.stderr, flush=True)
            for line in ("Lock blocking 0x55d1c2b3a8f0   @", "Lock returning 0x55d1c2b3a8f0 @",
                         "Unlock 0x55d1c2b3a8f0 @"):  # abseil's raw log of a worker at exit (no setting turns it off)
                print(f"[mutex.cc : 452] RAW: {line}", file=sys.stderr, flush=True)
            print("WARNING something Ray users must see", file=sys.stderr, flush=True)

    trials = [Trial.remote(), Trial.remote()]
    ray.get([t.epoch.remote(loss) for t, loss in zip(trials, (0.5, 0.7))])
    ray.get(trials[0].ray_notices.remote())
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
    # Ray's notices to itself are dropped; a real warning stays
    assert "something Ray users must see" in console, console[-3000:]
    assert "State API" not in console and "PreemptionWatcher" not in console, console[-3000:]
    assert "mutex.cc" not in console, console[-3000:]
