"""The rendezvous port of launch/slurm/train.sbatch. It was 29500 for every job: two jobs sharing their first
node (`--nodes 1 --gpus-per-node 4` twice on an 8-GPU node, a common sight on a shared cluster) met on one port
and the second failed at its rendezvous ("address already in use"). Without MASTER_PORT the script now takes a
port free on the first node, where Slurm runs the batch script. Run outside Slurm with a fake `scontrol`, `srun`
and DeepSpeed launcher that record what they are given."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from support.fusion import CPU_DEMO, ROOT

SBATCH = ROOT / "launch" / "slurm" / "train.sbatch"
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
TOOLS = {
    "scontrol": '#!/usr/bin/env bash\nprintf "%s\\n" gpu-a gpu-b\n',
    # srun: drop its own options (all given as --opt value or --opt=value here), then run the command once
    "srun": '#!/usr/bin/env bash\nwhile [[ "$1" == -* ]]; do [[ "$1" == *=* ]] && shift || shift 2; done\n'
            'exec "$@"\n',
    "deepspeed": '#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$FAKE_LOG/deepspeed.args"\n',
}


@pytest.fixture
def sbatch(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in TOOLS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SLURM_") and k not in ("MASTER_ADDR", "MASTER_PORT", "GPUS_PER_NODE", "HOSTFILE")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", FAKE_LOG=str(tmp_path), SLURM_JOB_NODELIST="gpu-[a-b]",
               SLURM_JOB_NUM_NODES="2", SLURM_JOB_ID="4243", SLURM_SUBMIT_DIR=str(ROOT), PYTHON=PY,
               SLURM_GPUS_ON_NODE="1", LAUNCHER="deepspeed", DEEPSPEED=str(bin_dir / "deepspeed"),
               HOSTFILE=str(tmp_path / "hosts"))

    def go(**extra):
        done = subprocess.run(["bash", str(SBATCH), str(CPU_DEMO), "data.shards=/shared/shards"], cwd=ROOT,
                              env={**env, **extra}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        argv = (tmp_path / "deepspeed.args").read_text().splitlines()
        return int(argv[argv.index("--master_port") + 1]), done.stderr
    return go


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def test_a_job_whose_first_node_has_29500_in_use_gets_another_port(sbatch):
    held = socket.socket()
    try:
        try:
            held.bind(("", 29500))
            held.listen()
        except OSError:
            pass  # something else holds it: in use all the same
        port, err = sbatch()
        assert port != 29500 and _free(port), port
        assert f"rendezvous gpu-a:{port}" in err, err
    finally:
        held.close()


def test_a_master_port_given_is_kept(sbatch):
    assert sbatch(MASTER_PORT="29633")[0] == 29633
