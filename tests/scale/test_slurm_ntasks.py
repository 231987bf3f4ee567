"""`sbatch --ntasks-per-node=8 ... launch/slurm/train.sbatch` (sbatch options win over the #SBATCH lines, and many
job scripts ask for a task per GPU): the job's SLURM_NTASKS (16 on 2 nodes) is srun's default task count, which
wins over `--ntasks-per-node 1`, so the torchrun step asked for 16 tasks (16 torchruns) where one per node was
meant. The step now gives srun its task count (one per node) itself. The stand-in srun resolves the count as srun
does: --ntasks, else SLURM_NTASKS, else one per node."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from support.launch_wrappers import REAL_PYTHON, ROOT

SBATCH = ROOT / "launch" / "slurm" / "train.sbatch"
FAKE_SRUN = r"""#!/usr/bin/env bash
nodes=1 tasks=${SLURM_NTASKS:-}
while [[ $# -gt 0 && "$1" == -* ]]; do
  case "$1" in --nodes|-N) nodes=$2; shift 2 ;; --ntasks|-n) tasks=$2; shift 2 ;; --*=*) shift ;; *) shift 2 ;; esac
done
echo "${tasks:-$nodes}" > "$FAKE_SLURM_LOG/tasks"
"""
FAKE_SCONTROL = "#!/usr/bin/env bash\nprintf '%s\\n' node01 node02\n"


def test_the_torchrun_step_runs_one_task_per_node_whatever_the_jobs_task_count(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"srun": FAKE_SRUN, "scontrol": FAKE_SCONTROL}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in (
        "MASTER_ADDR", "MASTER_PORT", "GPUS_PER_NODE", "HOSTFILE", "DEEPSPEED", "PYTHON", "LAUNCHER")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=str(ROOT), FAKE_SLURM_LOG=str(tmp_path),
               PYTHON=str(REAL_PYTHON), SLURM_JOB_NODELIST="node[01-02]", SLURM_JOB_NUM_NODES="2", SLURM_JOB_ID="7",
               SLURM_GPUS_ON_NODE="8", SLURM_NTASKS="16", SLURM_NTASKS_PER_NODE="8", SLURM_SUBMIT_DIR=str(ROOT))
    done = subprocess.run(["bash", str(SBATCH), "cpu-demo", "run.name=t"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "tasks").read_text().strip() == "2"
