"""The launch/*.sh wrappers run with a stand-in interpreter (`PYTHON`): it answers what the wrapper asks Python
(or runs the real one) and prints the launcher's command line instead of starting it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch"
REAL_PYTHON = ROOT / ".venv" / "bin" / "python"
WRAPPER_VARIABLES = ("PYTHON", "CONFIG", "PROFILE", "HOSTFILE", "NUM_GPUS", "CUDA_VISIBLE_DEVICES", "MASTER_ADDR",
                     "MASTER_PORT")
"""What the wrappers read from the environment: the tests' own runs start without any of them."""

NO_GPU_DEEPSPEED_PRINTER = """#!/usr/bin/env bash
if [[ "$1" == -c && "$2" == *device_count* ]]; then echo 0; exit 0; fi
if [[ "$1 $2" == "-m deepspeed.launcher.runner" ]]; then shift 2; printf '%s\\n' "$@"; exit 0; fi
exec {python} "$@"
"""
"""A `fake_python` for `wrapper_runner`: a machine without GPUs whose DeepSpeed runner prints its arguments, one a
line, instead of starting anything; anything else is the real Python."""


def wrapper_runner(folder: Path, fake_python: str) -> Callable[..., subprocess.CompletedProcess]:
    """`go(script, args, **env)`: launch/<script> run in `folder` with `fake_python` (a bash script whose `{python}`
    is the real interpreter) as PYTHON, on an environment without the wrapper variables but `env`."""
    fake = folder / "fakepy"
    fake.write_text(fake_python.format(python=str(REAL_PYTHON if REAL_PYTHON.exists() else sys.executable)))
    fake.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k not in WRAPPER_VARIABLES}

    def go(script: str, args, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(LAUNCH / script), *args], cwd=folder, capture_output=True, text=True,
                              env={**environ, "PYTHON": str(fake), **env}, timeout=120)
    return go


SIGNAL_PROBE = """#!/usr/bin/env bash
# The launcher (`-m {launcher}`) says it is ready, then reports the signal that reaches it and exits.
if [[ "$1" == -c && "$2" == *device_count* ]]; then echo 0; exit 0; fi
if [[ "$1 $2" == "-m {launcher}" ]]; then
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


def signal_wrapper(folder: Path, script: str, args, launcher: str, sig: int, **env: str):
    """Run launch/<script> with a stand-in interpreter whose launcher (`-m <launcher>`) waits for a signal; send the
    wrapper `sig` once the launcher is up. Returns (the launcher's stdout, the wrapper's stderr, its exit code)."""
    probe = folder / "probe"
    probe.write_text(SIGNAL_PROBE.replace("{launcher}", launcher).replace(
        "{python}", str(REAL_PYTHON if REAL_PYTHON.exists() else sys.executable)))
    probe.chmod(0o755)
    environ = {k: v for k, v in os.environ.items() if k not in WRAPPER_VARIABLES}
    wrapper = subprocess.Popen(["bash", str(LAUNCH / script), *args], cwd=folder,
                               env={**environ, "PYTHON": str(probe), **env}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert wrapper.stdout.readline().strip() == "ready"
        wrapper.send_signal(sig)
        out, err = wrapper.communicate(timeout=60)
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
    return out, err, wrapper.returncode


def fake_sbatch(folder: Path, srun_script: str, args, **env: str) -> subprocess.CompletedProcess:
    """`launch/slurm/train.sbatch args` in `folder` as on a 2-node job of 1 GPU each, with `srun_script` as `srun`
    (it finds `$FAKE_SLURM_LOG` = `folder`) and `env` over a shell environment without Slurm's or the launch
    variables."""
    (folder / "srun").write_text(srun_script)
    (folder / "srun").chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in (
        "MASTER_ADDR", "MASTER_PORT", "PYTHON", "LAUNCHER", "GPUS_PER_NODE", "COMMAND")}
    base.update(PATH=f"{folder}:{base['PATH']}", PYTHONPATH=str(ROOT), PYTHON=str(REAL_PYTHON),
                FAKE_SLURM_LOG=str(folder), SLURM_JOB_NODELIST="node1,node2", SLURM_JOB_NUM_NODES="2",
                SLURM_SUBMIT_DIR=str(ROOT), SLURM_GPUS_ON_NODE="1", **env)
    return subprocess.run(["bash", str(LAUNCH / "slurm" / "train.sbatch"), *args], cwd=folder, env=base,
                          capture_output=True, text=True, timeout=120)
