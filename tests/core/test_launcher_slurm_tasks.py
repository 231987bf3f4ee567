"""`srun -n 2 mmlnb-dist train ...` (Slurm tasks started without torchrun or the DeepSpeed launcher): Slurm gives each
task SLURM_PROCID / SLURM_STEP_NUM_TASKS but no RANK / WORLD_SIZE, so each task ran as rank 0 of 1 on the same run
folder: one trained alone on one GPU while the other failed on the folder's lock, naming neither the cause nor the
fix. Every task is now refused in one line naming the Slurm variables and the launchers that form the world."""
from __future__ import annotations

import contextlib
import io

import pytest
import torch

from mmlnb_dist.cli import main
from mmlnb_dist.core import distributed as D
from mmlnb_dist.core.errors import UserError


@pytest.fixture
def slurm_task(monkeypatch):
    for key in D.LAUNCHER_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    for key, value in {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_STEP_NUM_TASKS": "2", "SLURM_LOCALID": "1",
                       "SLURM_STEP_ID": "0", "SLURM_JOB_ID": "77"}.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_srun_tasks_without_a_launcher_are_refused_naming_the_fix(slurm_task):
    with pytest.raises(UserError) as err:
        D.DistEnv.from_environment(torch.device("cpu"))
    text = str(err.value)
    assert "SLURM_PROCID=1" in text and "SLURM_STEP_NUM_TASKS=2" in text, text
    assert "torchrun" in text and "launch/slurm/train.sbatch" in text, text


def test_the_command_line_says_it_in_one_line(slurm_task):
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(io.StringIO()):
        code = main(["config", "show", "--config", "cpu-demo"])
    assert code == 2 and "Traceback" not in out.getvalue() and "SLURM_STEP_NUM_TASKS=2" in out.getvalue(), \
        out.getvalue()


def test_one_task_a_launcher_or_the_batch_script_are_accepted(slurm_task):
    slurm_task.setenv("SLURM_STEP_NUM_TASKS", "1")  # srun -n 1 mmlnb-dist ...
    assert D.DistEnv.from_environment(torch.device("cpu")).world_size == 1
    slurm_task.delenv("SLURM_STEP_NUM_TASKS")  # the batch script of `sbatch -n 4` (no step): one process
    assert D.DistEnv.from_environment(torch.device("cpu")).world_size == 1
    slurm_task.setenv("SLURM_STEP_NUM_TASKS", "2")  # torchrun under srun --ntasks-per-node 1: its ranks
    for key, value in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}.items():
        slurm_task.setenv(key, value)
    assert (D.DistEnv.from_environment(torch.device("cpu")).rank,) == (3,)


def test_a_ray_trial_inside_such_a_task_is_rank_0_of_1(slurm_task):
    """`srun -N 2 ray start ...`: the trial processes inherit the task's variables; forget_launcher makes them alone."""
    D.forget_launcher()
    assert D.DistEnv.from_environment(torch.device("cpu")).world_size == 1
