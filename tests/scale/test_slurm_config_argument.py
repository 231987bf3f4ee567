"""train.sbatch's first argument is the config: `sbatch train.sbatch data.shards=/x` (the config forgotten) was
refused as "config file data.shards=/x not found", and `sbatch train.sbatch -- CONFIG ...` (torchrun's and the
DeepSpeed launcher's separator) as "config file -- not found". A leading `--` is now skipped, and an override in
the config's place is named as such."""
from __future__ import annotations

import os
import subprocess

from support.launch_wrappers import REAL_PYTHON, ROOT

FAKE_SRUN = "#!/usr/bin/env bash\nprintf '%s\\n' \"$@\" > \"$FAKE_SLURM_LOG/srun.args\"\n"


def _sbatch(tmp, *args):
    (tmp / "srun").write_text(FAKE_SRUN)
    (tmp / "srun").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in (
        "MASTER_ADDR", "MASTER_PORT", "PYTHON", "LAUNCHER", "GPUS_PER_NODE")}
    env.update(PATH=f"{tmp}:{env['PATH']}", PYTHONPATH=str(ROOT), PYTHON=str(REAL_PYTHON), FAKE_SLURM_LOG=str(tmp),
               SLURM_JOB_NODELIST="node1,node2", SLURM_JOB_NUM_NODES="2", SLURM_SUBMIT_DIR=str(ROOT),
               SLURM_GPUS_ON_NODE="1")
    return subprocess.run(["bash", str(ROOT / "launch" / "slurm" / "train.sbatch"), *args], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=120)


def test_an_override_in_the_configs_place_is_named(tmp_path):
    done = _sbatch(tmp_path, "data.shards=/x", "run.name=a")
    assert done.returncode == 2 and not (tmp_path / "srun.args").exists(), done.stderr
    assert "data.shards=/x" in done.stderr and "first argument is the config" in done.stderr, done.stderr


def test_a_leading_separator_is_skipped(tmp_path):
    done = _sbatch(tmp_path, "--", "cpu-demo", "run.name=a")
    assert done.returncode == 0, done.stderr
    argv = (tmp_path / "srun.args").read_text().splitlines()
    assert argv[-3:] == ["--config", str(ROOT / "mmlnb_dist" / "profiles" / "cpu-demo.yaml"), "run.name=a"], argv
