"""Stopping a CLIP run inside an epoch loses no trained step. A scheduler's SIGTERM (Slurm's time limit, a
preemption) ended the CLIP recipe at once and its resume went back to the last epoch checkpoint, and
`train.checkpoint_every_steps` was refused: on a large set a preempted job lost up to an epoch of work. Now the
run checkpoints the step it stops at (or every N steps), with the data position, and the resume continues the
epoch with the remaining batches: the final weights equal an uninterrupted run's, tensor by tensor."""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
import torch

from support.clip import caption_shards, clip_config
from support.processes import run_group

ARGS = ("train.epochs=2", "train.global_batch_size=8", "train.log_every=1", "train.keep_checkpoints=20",
        "data.loader.augment=false")


class Killed(KeyboardInterrupt):
    pass


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return caption_shards(tmp_path_factory.mktemp("clip-mid"), n=64, size=32)


def _weights(run_dir: Path, tag: str):
    from mmlnb_dist.core.checkpoint import fp32_state_dict_from_checkpoint

    return fp32_state_dict_from_checkpoint(run_dir / "checkpoints", tag)[1]


def _assert_equal(a, b):
    assert a.keys() == b.keys()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def _at_step(monkeypatch, at: int, action):
    """Call `action()` right after training logs optimizer step `at` (train.log_every=1)."""
    from mmlnb_dist.core.tracking import loggers

    log_metrics = loggers.MultiLogger.log_metrics

    def log_then_act(self, metrics, step=None):
        log_metrics(self, metrics, step=step)
        if step == at and "train/loss" in metrics:
            action()

    monkeypatch.setattr(loggers.MultiLogger, "log_metrics", log_then_act)


def _reference(shards: Path, out: Path, *extra: str) -> dict:
    """An uninterrupted run (its result; its folder is `out/ref`)."""
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    return run(recipe_class("clip"), clip_config(shards, out, *ARGS, *extra, name="ref"))


def _steps_per_epoch(run_dir: Path) -> int:
    import json

    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return max(steps) // 2


def test_sigterm_mid_epoch_checkpoints_that_step_and_the_resume_equals_an_uninterrupted_run(shards, tmp_path,
                                                                                          monkeypatch):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.core.signals import Terminated
    from mmlnb_dist.recipes import recipe_class

    reference = _reference(shards, tmp_path)
    per_epoch = _steps_per_epoch(tmp_path / "ref")
    assert per_epoch >= 4, per_epoch
    step = per_epoch + 2  # inside epoch 1
    _at_step(monkeypatch, step, lambda: signal.pthread_kill(threading.get_ident(), signal.SIGTERM))
    with pytest.raises(Terminated, match="stopped at step 2 of epoch 1"):
        run(recipe_class("clip"), clip_config(shards, tmp_path, *ARGS, name="r"))
    monkeypatch.undo()
    assert (tmp_path / "r" / "checkpoints" / "latest").read_text() == f"step-{step:06d}"

    resumed = run(recipe_class("clip"), clip_config(shards, tmp_path, *ARGS, "run.resume=true", name="r"))
    _assert_equal(_weights(tmp_path / "ref", "epoch-0001"), _weights(tmp_path / "r", "epoch-0001"))
    assert resumed["val/micro_f1"] == reference["val/micro_f1"]
    # The step checkpoint (number 8) is older than epoch-0001 (number 1): a later resume, and retention, must
    # take the order they were saved in, not their numbers (it resumed from the step checkpoint, epochs back).
    from mmlnb_dist.core.checkpoint import CheckpointManager
    from mmlnb_dist.core.distributed import DistEnv

    manager = CheckpointManager(tmp_path / "r" / "checkpoints", DistEnv())
    assert manager.tags() == ["epoch-0000", f"step-{step:06d}", "epoch-0001"]
    assert manager.latest() == "epoch-0001"


def test_a_run_killed_between_step_checkpoints_resumes_from_the_last_one_to_the_same_weights(shards, tmp_path,
                                                                                           monkeypatch):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    args = ("train.checkpoint_every_steps=2",)
    _reference(shards, tmp_path, *args)
    step = _steps_per_epoch(tmp_path / "ref") + 3  # inside epoch 1, a step or two after a step checkpoint

    def kill():
        raise Killed()

    _at_step(monkeypatch, step, kill)
    with pytest.raises(Killed):
        run(recipe_class("clip"), clip_config(shards, tmp_path, *ARGS, *args, name="r"))
    monkeypatch.undo()
    latest = (tmp_path / "r" / "checkpoints" / "latest").read_text()
    assert latest.startswith("step-") and int(latest[5:]) in (step - 1, step - 2), latest
    run(recipe_class("clip"), clip_config(shards, tmp_path, *ARGS, *args, "run.resume=true", name="r"))
    final = (tmp_path / "ref" / "checkpoints" / "latest").read_text()
    assert (tmp_path / "r" / "checkpoints" / "latest").read_text() == final
    _assert_equal(_weights(tmp_path / "ref", final), _weights(tmp_path / "r", final))


@pytest.mark.slow
def test_a_one_process_sigterm_checkpoint_resumes_on_two_processes(shards, tmp_path):
    """The rest of the epoch is dealt anew over 2 ranks (the global batch kept), said in the log, and the run
    finishes: the shared mid-epoch code (`recipes.epochs`) serves the CLIP loop as it does fusion's."""
    import subprocess
    import sys

    from mmlnb_dist.core.tracking.server import free_port

    from support.clip import CLIP_PROFILE, ROOT
    from support.fusion import gate_env, gated_train_command

    py = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    args = ["train", "--config", str(CLIP_PROFILE), f"data.shards={shards}", f"run.output_dir={tmp_path}",
            "run.name=r", "data.loader.num_workers=0", "data.loader.image_size=32", "tracking.backends=[stdout]",
            *ARGS]
    stopped = subprocess.run(gated_train_command(py, args), cwd=ROOT, env=gate_env(env, tmp_path / "gate", "sigterm:8"),
                             capture_output=True, text=True, timeout=600)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert (tmp_path / "r" / "checkpoints" / "latest").read_text() == "step-000008"
    resumed = run_group([py, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                              str(free_port()), "--no-python", py, "-m", "mmlnb_dist.cli", *args,
                              "run.resume=true"],
                             cwd=ROOT, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming on 2 processes, saved with 1: accumulation 1 -> 1" in resumed.stderr, resumed.stderr[-3000:]
    assert (tmp_path / "r" / "export" / "model.safetensors").is_file()
