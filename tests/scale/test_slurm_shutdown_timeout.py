"""TORCH_ELASTIC_SHUTDOWN_TIMEOUT (the seconds torchrun lets its ranks save their step after the scheduler's SIGTERM)
is checked before any node starts: torchrun reads it with int(), so a value such as `110s` failed every node's
torchrun at its start with a ValueError traceback, after srun had started them all."""
from __future__ import annotations

import pytest

from support.launch_wrappers import fake_sbatch

FAKE_SRUN = "#!/usr/bin/env bash\necho \"$TORCH_ELASTIC_SHUTDOWN_TIMEOUT\" > \"$FAKE_SLURM_LOG/srun.ran\"\n"


def _sbatch(tmp, timeout):
    return fake_sbatch(tmp, FAKE_SRUN, ["cpu-demo", "run.name=a"], TORCH_ELASTIC_SHUTDOWN_TIMEOUT=timeout)


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
