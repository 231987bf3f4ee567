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
