"""A scheduler stops a job with SIGTERM (Slurm at its time limit or on preemption, Kubernetes, a spot reclaim),
then SIGKILL a grace period later. Fusion training ended at once on SIGTERM (as KILLED) and its resume went back
to the last epoch checkpoint: everything trained since was lost (with `train.checkpoint_every_steps=0`, the
default, up to an epoch: hours on a large set). Now the run finishes the optimizer step it is in, checkpoints
there with its data position and stops; the resume continues from that step and ends bit-identical to an
uninterrupted run."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from support.fusion import CPU_DEMO, ROOT, checkpoint_weights, gate_env, gated_train_command, make_shards

PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
ARGS = ["--config", str(CPU_DEMO), "tracking.backends=[stdout]", "data.loader.num_workers=0", "run.seed=0",
        "data.loader.image_size=32", "data.loader.augment=false", "train.epochs=3", "train.global_batch_size=8",
        "train.log_every=1", "train.keep_checkpoints=10", "fusion.curriculum.phases=[{start_epoch: 0}]"]


def _env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("sigterm")
    shards = make_shards(root, n=60, size=32)
    done = subprocess.run([PY, "-m", "mmlnb_dist.cli", "train", *ARGS, f"data.shards={shards}",
                           f"run.output_dir={root / 'ref'}", "run.name=r"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = json_steps(root / "ref" / "r")
    return {"root": root, "shards": shards, "steps_per_epoch": steps // 3}


def json_steps(run_dir) -> int:
    import json

    return max(json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines())


@pytest.mark.parametrize("where", ["mid-epoch", "last step of an epoch"])
def test_sigterm_checkpoints_the_step_it_stops_at_and_the_resume_equals_an_uninterrupted_run(reference, tmp_path,
                                                                                           where):
    per_epoch = reference["steps_per_epoch"]
    assert per_epoch >= 4, "an epoch must have steps to stop inside"
    step = per_epoch + 2 if where == "mid-epoch" else 2 * per_epoch  # in epoch 1, or at its end
    run = [f"data.shards={reference['shards']}", f"run.output_dir={tmp_path}", "run.name=r"]
    stopped = subprocess.run(gated_train_command(PY, ["train", *ARGS, *run]), cwd=ROOT,
                             env=gate_env(_env(), tmp_path / "gate", f"sigterm:{step}"), capture_output=True,
                             text=True, timeout=600)
    assert stopped.returncode == 130, stopped.stderr[-3000:]  # ended as interrupted (the run is KILLED)
    latest = (tmp_path / "r" / "checkpoints" / "latest").read_text()
    if where == "mid-epoch":
        assert "stopped at step 2 of epoch 1, checkpointed" in stopped.stderr, stopped.stderr[-3000:]
        assert latest == f"step-{step:06d}", latest
    else:
        assert "stopped after epoch 1, checkpointed" in stopped.stderr, stopped.stderr[-3000:]
        assert latest == "epoch-0001", latest
    assert json_steps(tmp_path / "r") == step  # nothing trained after the step it stopped at

    resumed = subprocess.run([PY, "-m", "mmlnb_dist.cli", "train", *ARGS, *run, "run.resume=true"], cwd=ROOT,
                             env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = checkpoint_weights(reference["root"] / "ref" / "r" / "checkpoints", "epoch-0002")
    b = checkpoint_weights(tmp_path / "r" / "checkpoints", "epoch-0002")
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []


def test_a_sigterm_to_the_whole_job_with_loader_workers_still_checkpoints_the_step(reference, tmp_path):
    """Slurm signals every process of the job: the loader workers got the SIGTERM too, died, and the training
    process crashed at its next batch ("DataLoader worker ... is killed by signal: Terminated"), no checkpoint."""
    step = reference["steps_per_epoch"] + 2
    run = [f"data.shards={reference['shards']}", f"run.output_dir={tmp_path}", "run.name=r",
           "data.loader.num_workers=2"]
    stopped = subprocess.run(gated_train_command(PY, ["train", *ARGS, *run]), cwd=ROOT,
                             env=gate_env(_env(), tmp_path / "gate", f"sigterm-group:{step}"), capture_output=True,
                             text=True, timeout=600, start_new_session=True)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "stopped at step 2 of epoch 1, checkpointed" in stopped.stderr, stopped.stderr[-3000:]
    assert (tmp_path / "r" / "checkpoints" / "latest").read_text() == f"step-{step:06d}"
    resumed = subprocess.run([PY, "-m", "mmlnb_dist.cli", "train", *ARGS, *run, "run.resume=true"], cwd=ROOT,
                             env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json_steps(tmp_path / "r") == 3 * reference["steps_per_epoch"]


@pytest.mark.slow
def test_under_a_launcher_every_rank_stops_at_the_step_one_rank_was_signalled_at(reference, tmp_path):
    """Only rank 0 gets the signal here (a scheduler may reach the ranks one after the other): the ranks agree at
    each optimizer step, so both checkpoint the same step (the save is collective) and the 2-process resume ends
    bit-identical to an uninterrupted 2-process run."""
    from mmlnb_dist.core.tracking.server import free_port

    def launch(program):
        return [PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
                "--no-python", *program]

    two = [*ARGS, f"data.shards={reference['shards']}", "distributed.micro_batch_per_gpu=4"]
    ref = subprocess.run(launch([PY, "-m", "mmlnb_dist.cli", "train", *two, f"run.output_dir={tmp_path / 'ref'}",
                                 "run.name=r"]), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]
    step = reference["steps_per_epoch"] + 2
    run = [*two, f"run.output_dir={tmp_path}", "run.name=r"]
    stopped = subprocess.run(launch(gated_train_command(PY, ["train", *run])), cwd=ROOT,
                             env=gate_env(_env(), tmp_path / "gate", f"sigterm:{step}"), capture_output=True,
                             text=True, timeout=600)
    assert stopped.returncode != 0 and "stopped at step 2 of epoch 1, checkpointed" in stopped.stderr, \
        stopped.stderr[-3000:]
    assert (tmp_path / "r" / "checkpoints" / "latest").read_text() == f"step-{step:06d}"
    resumed = subprocess.run(launch([PY, "-m", "mmlnb_dist.cli", "train", *run, "run.resume=true"]), cwd=ROOT,
                             env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = checkpoint_weights(tmp_path / "ref" / "r" / "checkpoints", "epoch-0002")
    b = checkpoint_weights(tmp_path / "r" / "checkpoints", "epoch-0002")
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
