"""A MASTER_PORT that is no port (`MASTER_PORT=abc`, a typo; 70000, beyond 65535) is refused by name before anything
starts: train.sbatch passed it to every node's torchrun, which failed at its rendezvous on each node with a
traceback; train_node.sh took any number, and the launcher failed on a port that cannot exist."""
from __future__ import annotations

import os
import subprocess

import pytest

from support.launch_wrappers import NO_GPU_DEEPSPEED_PRINTER, REAL_PYTHON, ROOT, wrapper_runner

FAKE = NO_GPU_DEEPSPEED_PRINTER
FAKE_SRUN = "#!/usr/bin/env bash\necho started > \"$FAKE_SLURM_LOG/srun.ran\"\n"


@pytest.mark.parametrize("port", ["abc", "70000", "0"])
def test_train_node_refuses_a_master_port_that_is_no_port(tmp_path, port):
    done = wrapper_runner(tmp_path, FAKE)("train_node.sh", ["data.shards=s"], MASTER_PORT=port, NUM_GPUS="2")
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr)
    assert f"MASTER_PORT={port}" in done.stderr, done.stderr


@pytest.mark.parametrize("port", ["abc", "70000"])
def test_train_sbatch_refuses_a_master_port_that_is_no_port(tmp_path, port):
    (tmp_path / "srun").write_text(FAKE_SRUN)
    (tmp_path / "srun").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in ("MASTER_ADDR", "PYTHON")}
    env.update(PATH=f"{tmp_path}:{env['PATH']}", PYTHONPATH=str(ROOT), PYTHON=str(REAL_PYTHON), MASTER_PORT=port,
               FAKE_SLURM_LOG=str(tmp_path), SLURM_JOB_NODELIST="node1,node2", SLURM_JOB_NUM_NODES="2",
               SLURM_SUBMIT_DIR=str(ROOT), SLURM_GPUS_ON_NODE="1")
    done = subprocess.run(["bash", str(ROOT / "launch" / "slurm" / "train.sbatch"), "cpu-demo"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"MASTER_PORT={port}" in done.stderr and not (tmp_path / "srun.ran").exists(), done.stderr


def test_a_port_in_range_is_kept(tmp_path):
    done = wrapper_runner(tmp_path, FAKE)("train_node.sh", ["data.shards=s"], MASTER_PORT="29611", NUM_GPUS="2")
    assert done.returncode == 0, done.stderr
    argv = done.stdout.splitlines()
    assert argv[argv.index("--master_port") + 1] == "29611"
