"""`#SBATCH --signal=USR1@120` with `mmlnb-dist train` run straight from the job script: Slurm sends SIGUSR1 to
every process of the step, the training process and its loader workers. The run now stops at the step it is in,
checkpoints there and ends as interrupted (130); `run.resume=true` finishes it. It died at once before (Python's
default for SIGUSR1), losing everything since its last checkpoint."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from support.fusion import CPU_DEMO, ROOT, gate_env, gated_train_command, make_shards

PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
ARGS = ["--config", str(CPU_DEMO), "tracking.backends=[stdout]", "data.loader.num_workers=2", "run.seed=0",
        "data.loader.image_size=32", "data.loader.augment=false", "train.epochs=2", "train.global_batch_size=8",
        "train.log_every=1", "fusion.curriculum.phases=[{start_epoch: 0}]"]


def _env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def test_sigusr1_to_the_whole_job_checkpoints_the_step_and_the_run_resumes(tmp_path):
    shards = make_shards(tmp_path, n=60, size=32)
    run = [*ARGS, f"data.shards={shards}", f"run.output_dir={tmp_path / 'runs'}", "run.name=r"]
    stopped = subprocess.run(gated_train_command(PY, ["train", *run]), cwd=ROOT,
                             env=gate_env(_env(), tmp_path / "gate", "sigusr1-group:2"), capture_output=True,
                             text=True, timeout=600, start_new_session=True)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "SIGUSR1 received" in stopped.stderr, stopped.stderr[-3000:]
    assert "stopped at step 2 of epoch 0, checkpointed" in stopped.stderr, stopped.stderr[-3000:]
    checkpoints = tmp_path / "runs" / "r" / "checkpoints"
    assert (checkpoints / "latest").read_text() == "step-000002"
    resumed = subprocess.run([PY, "-m", "mmlnb_dist.cli", "train", *run, "run.resume=true"], cwd=ROOT, env=_env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [json.loads(line)["step"] for line in (tmp_path / "runs" / "r" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) > 2 and (checkpoints / "latest").read_text() == "epoch-0001"
