"""launch/slurm/train.sbatch with `LAUNCHER=deepspeed` on a stand-in two-node allocation (node01, node02): a fake
srun records the step's command line in `step.args`, a fake scontrol names the nodes."""
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


def sbatch_deepspeed(tmp: Path, run_name: str, **extra: str) -> subprocess.CompletedProcess:
    """Run train.sbatch in `tmp` on the environment of a two-node job with no launcher variables of the caller's
    shell, plus `extra` (HOSTFILE, SLURM_GPUS_*...)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in {"srun": FAKE_SRUN, "scontrol": FAKE_SCONTROL}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in (
        "MASTER_ADDR", "MASTER_PORT", "GPUS_PER_NODE", "HOSTFILE", "DEEPSPEED", "PYTHON", "LAUNCHER")}
    env.update(PATH=f"{bin_dir}:{env['PATH']}", PYTHONPATH=str(ROOT), FAKE_SLURM_LOG=str(tmp), LAUNCHER="deepspeed",
               PYTHON=str(REAL_PYTHON), DEEPSPEED="deepspeed", SLURM_JOB_NODELIST="node[01-02]", SLURM_JOB_NUM_NODES="2",
               SLURM_JOB_ID="7", SLURM_SUBMIT_DIR=str(ROOT), **extra)
    return subprocess.run(["bash", str(SBATCH), "cpu-demo", f"run.name={run_name}"], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=120)
