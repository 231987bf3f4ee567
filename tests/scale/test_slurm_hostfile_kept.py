"""`LAUNCHER=deepspeed` in launch/slurm/train.sbatch writes the DeepSpeed hostfile of the allocation to HOSTFILE.
sbatch passes the submitting shell's environment on, so a HOSTFILE exported for launch/train_multinode.sh (a
hand-written launch/hostfile) was overwritten with the job's nodes without a word, and two jobs given the same
HOSTFILE wrote one file. A HOSTFILE that holds other hosts is now refused before the launch, naming it; the same
content (a requeued job) is fine."""
from __future__ import annotations

import subprocess
from pathlib import Path

from support.slurm_deepspeed import sbatch_deepspeed

def _sbatch(tmp: Path, hostfile: Path) -> subprocess.CompletedProcess:
    return sbatch_deepspeed(tmp, "h", SLURM_GPUS_ON_NODE="2", HOSTFILE=str(hostfile))


def test_a_hostfile_with_other_hosts_is_not_overwritten(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# my cluster\ngpu7 slots=8\ngpu8 slots=8\n")
    done = _sbatch(tmp_path, hostfile)
    assert done.returncode == 2, done.stderr
    assert f"HOSTFILE={hostfile}" in done.stderr and "unset HOSTFILE" in done.stderr, done.stderr
    assert hostfile.read_text() == "# my cluster\ngpu7 slots=8\ngpu8 slots=8\n"
    assert not (tmp_path / "step.args").exists()


def test_a_new_or_identical_hostfile_is_written_and_used(tmp_path):
    hostfile = tmp_path / "hosts"
    for _ in range(2):  # the second time: the file the first job wrote (a requeued job)
        done = _sbatch(tmp_path, hostfile)
        assert done.returncode == 0, done.stderr
        assert hostfile.read_text() == "node01 slots=2\nnode02 slots=2\n"
