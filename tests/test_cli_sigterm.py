"""Every command ends on a scheduler's SIGTERM as it does on Ctrl-C: "interrupted", exit code 130, its `finally`
blocks run (locks released, a pipeline stage's record saying it stopped). Only training (`core.recipe.run`)
turned SIGTERM into an interruption; `slides tile`, `shards build`, `describe`, `predict` and the pipeline's
other stages died on the spot (exit -15), leaving no reason in the stage record."""
from __future__ import annotations

import subprocess
import sys

from support.fusion import ROOT

PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
# `slides synth` whose work is: SIGTERM to itself, then waiting to be stopped by it
BOOT = ("import os, signal, sys, time; from mmlnb_dist.slides import synthetic_slides as s; "
        "s.write_synthetic_slide = lambda *a, **k: (os.kill(os.getpid(), signal.SIGTERM), time.sleep(60)); "
        "from mmlnb_dist import cli; sys.exit(cli.main(sys.argv[1:]))")


def test_a_sigterm_ends_any_command_as_interrupted(tmp_path):
    done = subprocess.run([PY, "-c", BOOT, "slides", "synth", "--out", str(tmp_path / "s"), "--size", "1024"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, (done.returncode, done.stderr[-2000:])
    assert "mmlnb-dist slides: interrupted" in done.stderr


def test_slides_tile_stops_its_pool_instead_of_tiling_every_queued_slide(tmp_path):
    """`slides tile --workers N` interrupted (a SIGTERM to the main process, Ctrl-C) left its process pool to run
    every queued slide before it exited: a `kill` of an overnight tiling job waited for the whole slide set. The
    queued slides are cancelled now; the ones in flight finish (their staged tiles are kept for the resume)."""
    import os
    import signal
    import time

    from mmlnb_dist.cli import main

    assert main(["slides", "synth", "--out", str(tmp_path / "slides"), "--per-class", "6", "--size", "2048"]) == 0
    total = len(list((tmp_path / "slides").glob("*.tif")))
    proc = subprocess.Popen([PY, "-m", "mmlnb_dist.cli", "slides", "tile", "--slides", str(tmp_path / "slides"),
                             "--labels", str(tmp_path / "slides" / "labels.csv"), "--out", str(tmp_path / "s"),
                             "--workers", "2", "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    results = tmp_path / "s.work" / "slides"
    while not list(results.glob("*/result.json")) and proc.poll() is None:
        time.sleep(0.02)  # the first slide done decides when to signal (not a time)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    done = len(list(results.glob("*/result.json")))
    assert done < total // 2, (done, total)  # the first slide, the ones in flight: not all 18
