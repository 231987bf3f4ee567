"""launch/finetune_vlm.sh names its run as the pipeline names its VLM run, and a scheduler's SIGTERM reaches every
process it started.

- Without a run.name=... it named the run after the config FILE (`my.yaml` with `run.name: exp1` gave runs/my-vlm
  where the pipeline writes runs/exp1-vlm); now it passes `--name-after-fusion-run`, so the name comes from the
  config's run.name (`recipes.vlm.config.vlm_run_name`, the pipeline's own rule).
- With NUM_GPUS > 1 it used to `exec` DeepSpeed's runner, which handles SIGTERM only for multi-node pdsh: a SIGTERM
  to the wrapper ended the runner and left its children (`deepspeed.launcher.launch`, the ranks) running, as
  train_node.sh did before it used `run_launcher` (tests/scale/test_launch_wrappers.py drills that one end to end).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support.fusion import ROOT

LAUNCH = ROOT / "launch"
REAL_PYTHON = ROOT / ".venv" / "bin" / "python"

ARGS_PROBE = """#!/usr/bin/env bash
# The DeepSpeed runner prints its arguments, one a line, instead of starting anything; anything else is Python.
if [[ "$1 $2" == "-m deepspeed.launcher.runner" ]]; then shift 2; printf '%s\\n' "$@"; exit 0; fi
exec {python} "$@"
"""

CHILD_PROBE = """#!/usr/bin/env bash
# The DeepSpeed runner starts a child (a rank), says its pid, and waits; a SIGTERM ends the runner (no handler).
if [[ "$1 $2" == "-m deepspeed.launcher.runner" ]]; then
  exec {python} -c "import subprocess, sys, time
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
print(child.pid, flush=True)
time.sleep(120)"
fi
exec {python} "$@"
"""


def _probe(tmp_path: Path, text: str) -> str:
    path = tmp_path / "probe"
    path.write_text(text.format(python=str(REAL_PYTHON if REAL_PYTHON.exists() else sys.executable)))
    path.chmod(0o755)
    return str(path)


def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _environ(**extra) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "CONFIG", "PROFILE", "HOSTFILE")}
    return {**environ, **extra}


@pytest.mark.parametrize("given, expected", [([], True), (["run.name=mine"], False)], ids=["default", "run.name"])
def test_the_wrapper_asks_for_the_pipelines_vlm_run_name_unless_given_one(tmp_path, given, expected):
    done = subprocess.run(["bash", str(LAUNCH / "finetune_vlm.sh"), "vlm.pairs=p", *given], cwd=tmp_path,
                          env=_environ(PYTHON=_probe(tmp_path, ARGS_PROBE), NUM_GPUS="2"), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    argv = done.stdout.splitlines()
    assert ("--name-after-fusion-run" in argv) is expected, argv
    assert argv[-1 - len(given):] == ["vlm.pairs=p", *given], argv
    assert not any(a.startswith("run.name=") and a not in given for a in argv), argv


def test_name_after_fusion_run_takes_the_configs_run_name_not_the_files(tmp_path, monkeypatch):
    from mmlnb_dist import cli
    from mmlnb_dist.core import recipe

    config = tmp_path / "my.yaml"
    config.write_text(f"run:\n  name: exp1\n  output_dir: {tmp_path / 'runs'}\n")
    seen = {}
    monkeypatch.setattr(recipe, "run", lambda recipe_cls, cfg, env=None: seen.setdefault("dir", cfg.run.dir) and {})
    assert cli.main(["finetune-vlm", "--config", str(config), "--name-after-fusion-run"]) == 0
    assert Path(seen["dir"]) == tmp_path / "runs" / "exp1-vlm"


def test_a_sigterm_to_the_multi_gpu_wrapper_reaches_the_ranks(tmp_path):
    wrapper = subprocess.Popen(["bash", str(LAUNCH / "finetune_vlm.sh"), "vlm.pairs=p"], cwd=tmp_path,
                               env=_environ(PYTHON=_probe(tmp_path, CHILD_PROBE), NUM_GPUS="2"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = None
    try:
        child = int(wrapper.stdout.readline())
        wrapper.send_signal(signal.SIGTERM)
        _, err = wrapper.communicate(timeout=60)
        assert wrapper.returncode == 130, err
        assert "stopped by SIGTERM" in err, err
        assert not _running(child), "the rank outlived the wrapper"
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
        if child is not None:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
