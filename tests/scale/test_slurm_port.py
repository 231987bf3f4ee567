"""How launch/slurm/train.sbatch starts: its rendezvous port, and the config it resolves.

The rendezvous port was 29500 for every job: two jobs sharing their first
node (`--nodes 1 --gpus-per-node 4` twice on an 8-GPU node, a common sight on a shared cluster) met on one port
and the second failed at its rendezvous ("address already in use"). Without MASTER_PORT the script now takes a
port free on the first node, where Slurm runs the batch script.

The config is resolved once, in the batch shell, by the job's Python. That Python's start-up messages on stderr (a
NumPy ABI warning when torch is imported, a site's notice) were captured with the path and became part of --config:
every rank then failed "config file not found". Run outside Slurm with a fake `scontrol`, `srun`
and DeepSpeed launcher that record what they are given."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from support.fusion import CPU_DEMO, ROOT
from support.ranks import port_is_free

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

    def go(config=str(CPU_DEMO), refused=False, **extra):
        done = subprocess.run(["bash", str(SBATCH), config, "data.shards=/shared/shards"], cwd=ROOT,
                              env={**env, **extra}, capture_output=True, text=True, timeout=120)
        if refused:
            assert done.returncode == 2 and not (tmp_path / "deepspeed.args").exists(), done.stderr
            return done.stderr
        assert done.returncode == 0, done.stderr
        argv = (tmp_path / "deepspeed.args").read_text().splitlines()
        return int(argv[argv.index("--master_port") + 1]), done.stderr, argv
    return go


def test_a_job_whose_first_node_has_29500_in_use_gets_another_port(sbatch):
    held = socket.socket()
    try:
        try:
            held.bind(("", 29500))
            held.listen()
        except OSError:
            pass  # something else holds it: in use all the same
        port, err, _ = sbatch()
        assert port != 29500 and port_is_free(port), port
        assert f"rendezvous gpu-a:{port}" in err, err
    finally:
        held.close()


def test_a_master_port_given_is_kept(sbatch):
    assert sbatch(MASTER_PORT="29633")[0] == 29633


def test_a_master_port_given_that_the_first_node_listens_on_is_refused_before_the_start(sbatch):
    # sbatch passes the submitting shell's MASTER_PORT on: two jobs sharing their first node met on it and the
    # second failed at its rendezvous on every node, after start-up; it is refused, as the launch/ wrappers do
    held = socket.socket()
    try:
        held.bind(("", 0))
        held.listen()
        port = held.getsockname()[1]
        err = sbatch(refused=True, MASTER_PORT=str(port))
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"train.sbatch: MASTER_PORT={port} is in use on the rendezvous node gpu-a"), last
    finally:
        held.close()


@pytest.mark.parametrize("port", [None, "29633"], ids=["port-chosen", "port-given"])
def test_a_master_addr_that_is_not_the_first_node_is_refused_before_the_start(sbatch, port):
    # The rendezvous is hosted on the first node, where the batch script runs (torchrun's node 0, is_host=1; the
    # DeepSpeed launcher's rank 0): a MASTER_ADDR of another host had every node wait for a store nobody listens
    # on (and the port was "chosen free" on the first node, not there), failing only at the rendezvous timeout.
    extra = {"MASTER_PORT": port} if port else {}
    err = sbatch(refused=True, MASTER_ADDR="gpu-z.invalid", **extra)
    last = err.strip().splitlines()[-1]
    assert last.startswith("train.sbatch: MASTER_ADDR=gpu-z.invalid is not an address of this node"), last
    assert "gpu-a" in last, last
    # an address of the first node (its loopback here; an InfiniBand name on a cluster) is kept
    for addr in ("127.0.0.1", "::1"):  # IPv6 too
        argv = sbatch(MASTER_ADDR=addr, **extra)[2]
        assert argv[argv.index("--master_addr") + 1] == addr, argv


NOISY_PYTHON = """#!/usr/bin/env bash
echo "UserWarning: Failed to initialize NumPy: _ARRAY_API not found" >&2
exec {python} "$@"
"""


def test_the_interpreters_warnings_on_stderr_do_not_become_part_of_the_config(sbatch, tmp_path):
    noisy = tmp_path / "noisy-python"
    noisy.write_text(NOISY_PYTHON.format(python=PY))
    noisy.chmod(0o755)
    _, err, argv = sbatch(config="rtx4090", PYTHON=str(noisy))
    config = argv[argv.index("--config") + 1]
    assert config == str(ROOT / "mmlnb_dist" / "profiles" / "rtx4090.yaml"), config
    assert "_ARRAY_API" in err, "the warning still reaches the job's log"


def test_a_config_refused_is_named_without_the_interpreters_warnings(tmp_path):
    from support.fusion import ROOT as root

    noisy = tmp_path / "noisy-python"
    noisy.write_text(NOISY_PYTHON.format(python=PY))
    noisy.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(PYTHON=str(noisy), SLURM_SUBMIT_DIR=str(root))
    done = subprocess.run(["bash", str(SBATCH), "rtx4909"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("train.sbatch: config file rtx4909 not found") and "shipped profiles" in last, last
