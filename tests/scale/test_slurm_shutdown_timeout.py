"""TORCH_ELASTIC_SHUTDOWN_TIMEOUT (the seconds torchrun lets its ranks save their step after the scheduler's SIGTERM)
is checked before any node starts: torchrun reads it with int(), so a value such as `110s` failed every node's
torchrun at its start with a ValueError traceback, after srun had started them all."""
from __future__ import annotations

import os
import subprocess

import pytest

from support.launch_wrappers import REAL_PYTHON, ROOT

FAKE_SRUN = "#!/usr/bin/env bash\necho \"$TORCH_ELASTIC_SHUTDOWN_TIMEOUT\" > \"$FAKE_SLURM_LOG/srun.ran\"\n"


def _sbatch(tmp, timeout):
    (tmp / "srun").write_text(FAKE_SRUN)
    (tmp / "srun").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in (
        "MASTER_ADDR", "MASTER_PORT", "PYTHON", "LAUNCHER", "GPUS_PER_NODE", "COMMAND")}
    env.update(PATH=f"{tmp}:{env['PATH']}", PYTHONPATH=str(ROOT), PYTHON=str(REAL_PYTHON), FAKE_SLURM_LOG=str(tmp),
               SLURM_JOB_NODELIST="node1,node2", SLURM_JOB_NUM_NODES="2", SLURM_SUBMIT_DIR=str(ROOT),
               SLURM_GPUS_ON_NODE="1", TORCH_ELASTIC_SHUTDOWN_TIMEOUT=timeout)
    return subprocess.run(["bash", str(ROOT / "launch" / "slurm" / "train.sbatch"), "cpu-demo", "run.name=a"],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value", ["110s", "-5", "1.5"])
def test_a_shutdown_timeout_that_is_no_number_of_seconds_is_refused_before_srun(tmp_path, value):
    done = _sbatch(tmp_path, value)
    assert done.returncode == 2 and not (tmp_path / "srun.ran").exists(), done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"TORCH_ELASTIC_SHUTDOWN_TIMEOUT={value}" in last, last


def test_a_shutdown_timeout_given_is_passed_on(tmp_path):
    done = _sbatch(tmp_path, "90")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "srun.ran").read_text().strip() == "90"
