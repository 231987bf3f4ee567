"""`LAUNCHER=deepspeed` in launch/slurm/train.sbatch with `PYTHON=python3` (an interpreter found on PATH, as the
header allows): the DeepSpeed launcher's path was derived as `$(dirname "$PYTHON")/deepspeed`, `./deepspeed`, which
srun could not start (the job failed at its launch). The launcher now runs as `$PYTHON -m
deepspeed.launcher.runner`, the DeepSpeed installed beside the interpreter, as the launch/*.sh wrappers run it;
DEEPSPEED=... still chooses another command."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support.launch_wrappers import REAL_PYTHON, ROOT

SBATCH = ROOT / "launch" / "slurm" / "train.sbatch"
FAKE_SRUN = r"""#!/usr/bin/env bash
while [[ $# -gt 0 && "$1" == -* ]]; do case "$1" in --*=*) shift ;; *) shift 2 ;; esac; done
printf '%s\n' "$@" > "$FAKE_SLURM_LOG/step.args"
"""
FAKE_SCONTROL = "#!/usr/bin/env bash\nprintf '%s\\n' node01 node02\n"


def _sbatch(tmp: Path, **extra: str) -> list:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    interpreter = f'#!/usr/bin/env bash\nexec {REAL_PYTHON} "$@"\n'  # python3x: found on PATH, as python3
    tools = {"srun": FAKE_SRUN, "scontrol": FAKE_SCONTROL, "python3x": interpreter}
    for name, text in tools.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in (
        "MASTER_ADDR", "MASTER_PORT", "GPUS_PER_NODE", "HOSTFILE", "DEEPSPEED", "PYTHON", "LAUNCHER")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=str(ROOT), FAKE_SLURM_LOG=str(tmp), LAUNCHER="deepspeed",
               PYTHON="python3x", SLURM_JOB_NODELIST="node[01-02]", SLURM_JOB_NUM_NODES="2", SLURM_JOB_ID="7",
               SLURM_GPUS_ON_NODE="2", SLURM_SUBMIT_DIR=str(ROOT), HOSTFILE=str(tmp / "hosts"), **extra)
    args = ["cpu-demo", "run.name=ds", *([extra["EXTRA_ARG"]] if "EXTRA_ARG" in extra else [])]
    done = subprocess.run(["bash", str(SBATCH), *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return (tmp / "step.args").read_text().splitlines()


def test_the_deepspeed_launcher_is_the_one_beside_an_interpreter_found_on_path(tmp_path):
    argv = _sbatch(tmp_path)
    assert argv[:3] == ["python3x", "-m", "deepspeed.launcher.runner"], argv
    assert argv[argv.index("--hostfile") + 1] == str(tmp_path / "hosts")
    assert argv[-3:] == ["--config", str(ROOT / "mmlnb_dist" / "profiles" / "cpu-demo.yaml"), "run.name=ds"]


def test_a_deepspeed_command_given_is_kept(tmp_path):
    assert _sbatch(tmp_path, DEEPSPEED="/opt/ds/bin/deepspeed")[0] == "/opt/ds/bin/deepspeed"


def test_an_override_the_nodes_shell_would_change_is_refused_before_the_launch(tmp_path):
    """The DeepSpeed launcher passes the arguments to every node through a remote shell (pdsh): `run.name=a;b`
    reached the ranks as `run.name=a` and a command `b` (launch/pdsh_safe.sh)."""
    with pytest.raises(AssertionError, match="run.name=a;b"):
        _sbatch(tmp_path, EXTRA_ARG="run.name=a;b")
    assert not (tmp_path / "step.args").exists()
