"""`LAUNCHER=deepspeed` in launch/slurm/train.sbatch writes the DeepSpeed hostfile of the allocation to HOSTFILE.
sbatch passes the submitting shell's environment on, so a HOSTFILE exported for launch/train_multinode.sh (a
hand-written launch/hostfile) was overwritten with the job's nodes without a word, and two jobs given the same
HOSTFILE wrote one file. A HOSTFILE that holds other hosts is now refused before the launch, naming it; the same
content (a requeued job) is fine."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support.launch_wrappers import REAL_PYTHON, ROOT

SBATCH = ROOT / "launch" / "slurm" / "train.sbatch"
FAKE_SRUN = r"""#!/usr/bin/env bash
while [[ $# -gt 0 && "$1" == -* ]]; do case "$1" in --*=*) shift ;; *) shift 2 ;; esac; done
printf '%s\n' "$@" > "$FAKE_SLURM_LOG/step.args"
"""
FAKE_SCONTROL = "#!/usr/bin/env bash\nprintf '%s\\n' node01 node02\n"


def _sbatch(tmp: Path, hostfile: Path) -> subprocess.CompletedProcess:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in {"srun": FAKE_SRUN, "scontrol": FAKE_SCONTROL}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in (
        "MASTER_ADDR", "MASTER_PORT", "GPUS_PER_NODE", "HOSTFILE", "DEEPSPEED", "PYTHON", "LAUNCHER")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=str(ROOT), FAKE_SLURM_LOG=str(tmp), LAUNCHER="deepspeed",
               PYTHON=str(REAL_PYTHON), DEEPSPEED="deepspeed", SLURM_JOB_NODELIST="node[01-02]",
               SLURM_JOB_NUM_NODES="2", SLURM_JOB_ID="7", SLURM_GPUS_ON_NODE="2", SLURM_SUBMIT_DIR=str(ROOT),
               HOSTFILE=str(hostfile))
    return subprocess.run(["bash", str(SBATCH), "cpu-demo", "run.name=h"], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=120)


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
