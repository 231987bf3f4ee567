"""Mid-epoch checkpoints of fusion training (`train.checkpoint_every_steps`) and resuming from them: on the same
world size the run ends bit-identical to an uninterrupted one, having trained on every key of the interrupted
epoch once, in the same order; on another world size (1 -> 2, 2 -> 1 processes under torchrun, gloo, ZeRO 0) the
rest of the epoch is dealt anew, each key once, the global batch kept and the change logged.

Kills are exact: the child runs the real CLI with the kill gate of `support.fusion` (it waits after the named
checkpoint is complete until it is killed); the parent waits for the gate file, not for time. Keys trained on come
from `fusion.record_train_keys` (`<run>/train_keys/rank-<r>.jsonl`, one flushed line per micro batch).

One module fixture runs everything once (6 short CLI runs on 64 train samples, 2 epochs of 8 optimizer steps):
the uninterrupted reference (1 process), a 1-process run killed after step 3 (epoch 0, images through the loader)
and resumed on 1 and (a copy) on 2 processes, and a 2-process run killed after step 12 (epoch 1, heads trained
from cached features) resumed on 1 process.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from mmlnb_dist.core.tracking.server import free_port

from support.fusion import CPU_DEMO, ROOT, checkpoint_weights, gate_env, gated_train_command, make_shards, wait_for_gate
from support.processes import run_group

PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
# Global batch 8 with micro batch 2: accumulation 4 on one process, 2 on two. 64 samples an epoch (of ~67): 8
# optimizer steps an epoch on either world size. Epoch 1 trains the heads from cached features (both encoders
# frozen), so both ways an epoch is read are resumed. The learning rate warms up over 4 of the 16 steps, then decays
# on a cosine (logged every step): the step-3 kill lands in the warmup, so a resume that did not restore the LR
# scheduler's position would train with other learning rates (a constant schedule would hide it).
TRAIN = ["tracking.backends=[stdout]", "data.loader.num_workers=0", "data.loader.image_size=64", "run.seed=0",
         "data.loader.augment=false",  # frozen image features are cached (epoch 1 trains from the feature table)
         "data.loader.epoch_samples=64", "train.global_batch_size=8", "distributed.micro_batch_per_gpu=2",
         "train.epochs=2", "train.checkpoint_every_steps=3", "train.keep_checkpoints=100",
         "fusion.record_train_keys=true", "fusion.curriculum.ramp_start=0", "fusion.curriculum.ramp_end=1",
         "fusion.curriculum.step_every=1", "train.lr_schedule.name=cosine", "train.lr_schedule.warmup_ratio=0.25",
         "train.log_every=1",
         "fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false},"
         " {start_epoch: 1, train_image_encoder: false, train_text_encoder: false}]"]
STEPS_PER_EPOCH = 8
# Tolerance of the metrics after a change of world size against the uninterrupted 1-process run at the same global
# batch. The runs cannot be equal: a 2-process run composes its steps of other samples from the start, after the
# change each step averages other samples again (the rest of the epoch is dealt anew) and the dropout draws differ.
# What must hold is that training went on from the checkpoint (not from scratch, not from a wrong position) to a
# comparable model: validation loss within 0.15 nats of the reference (measured on this machine: 0.005 for 1 -> 2,
# 0.077 for 2 -> 1). Accuracy is not compared: after 16 steps the tiny model is near chance (loss ~1.0, chance
# ln 3 = 1.10) and its balanced accuracy on 22 validation samples jumps by 0.3 with which 2-3 samples flip.
VAL_LOSS_TOL = 0.15


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def _args(shards: Path, out: Path, *extra: str) -> list:
    return ["train", "--config", str(CPU_DEMO), f"data.shards={shards}", f"run.output_dir={out}", "run.name=r",
            *TRAIN, *extra]


def _launch(nproc: int, args: list, gated: bool = False) -> list:
    """The command for `args` on `nproc` processes (torchrun for 2), optionally with the kill gate."""
    if gated:
        program = gated_train_command(PY, args)
    else:
        program = [PY, "-m", "mmlnb_dist.cli", *args]
    if nproc == 1:
        return program
    return [PY, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(free_port()),
            "--no-python", *program]


def _run(nproc: int, args: list) -> subprocess.CompletedProcess:
    proc = run_group(_launch(nproc, args), cwd=ROOT, env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _run_killed(nproc: int, args: list, gate: Path, tag: str) -> None:
    """Run until checkpoint `tag` is complete, then SIGKILL the ranks and the launcher (torchrun starts each rank
    in a session of its own, so they are found as the launcher's children, not by process group)."""
    import psutil

    proc = subprocess.Popen(_launch(nproc, args, gated=True), cwd=ROOT, env=gate_env(_env(), gate, f"saved:{tag}"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_gate(proc, gate) == f"saved:{tag}"
    finally:
        ranks = psutil.Process(proc.pid).children(recursive=True)
        for child in ranks:
            child.send_signal(signal.SIGKILL)
        psutil.wait_procs(ranks)
        proc.kill()
        proc.wait()


def _keys(run_dir: Path, epoch: int) -> list:
    """Every key trained on in `epoch` by every rank of every process that wrote into `run_dir`, in file order."""
    keys = []
    for path in sorted((run_dir / "train_keys").glob("rank-*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["epoch"] == epoch:
                keys += record["keys"]
    return keys


def _lrs(run_dir: Path) -> dict:
    """Optimizer step -> the learning rate logged for it (`<run_dir>/metrics.jsonl`, every process of the run)."""
    lrs = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "train/lr" in record:
            assert lrs.get(record["step"], record["train/lr"]) == record["train/lr"], record
            lrs[record["step"]] = record["train/lr"]
    return lrs


def _last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def _export(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "export" / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("midepoch")
    shards = make_shards(tmp / "data", n=90, size=64)
    out = {"ref": _run(1, _args(shards, tmp / "ref"))}

    _run_killed(1, _args(shards, tmp / "one"), tmp / "gate-one", "step-000003")
    # the same kill, resumed on 2 processes: a copy, moved to another run.output_dir as a user would move it
    shutil.copytree(tmp / "one", tmp / "one-to-two")
    stored = tmp / "one-to-two" / "r" / "config.yaml"
    stored.write_text(stored.read_text().replace(str(tmp / "one"), str(tmp / "one-to-two")))
    out["one"] = _run(1, _args(shards, tmp / "one", "run.resume=true"))
    out["one-to-two"] = _run(2, _args(shards, tmp / "one-to-two", "run.resume=true"))

    _run_killed(2, _args(shards, tmp / "two-to-one"), tmp / "gate-two", "step-000012")
    out["two-to-one"] = _run(1, _args(shards, tmp / "two-to-one", "run.resume=true"))
    return tmp, out


@pytest.mark.slow
def test_same_world_size_resume_is_bit_identical_and_sees_each_key_once(runs):
    """Without it a user resuming a killed run could get another model than the uninterrupted run: samples
    trained twice or skipped, or (under this warmup + cosine schedule) the learning rate restarted or misplaced."""
    tmp, out = runs
    ref, resumed = tmp / "ref" / "r", tmp / "one" / "r"
    ckpt = resumed / "checkpoints"
    assert "continuing epoch 0 after its step 3" in out["one"].stderr
    assert "resuming on" not in out["one"].stderr
    # every checkpoint is tagged by its optimizer step: 3, 6, 8 (end of epoch 0), 9, 12, 15, 16 (end)
    assert sorted(p.name for p in ckpt.iterdir() if p.name.startswith("step-")) == [
        f"step-{s:06d}" for s in (3, 6, 8, 9, 12, 15, 16)]
    # the interrupted epoch: every key once, in the uninterrupted order (the killed run's keys, then the resumed's)
    for epoch in (0, 1):
        assert _keys(resumed, epoch) == _keys(ref, epoch)
        assert len(_keys(ref, epoch)) == len(set(_keys(ref, epoch))) == 64
    # final weights: the last checkpoint and the export, tensor for tensor
    a, b = checkpoint_weights(ref / "checkpoints", "step-000016"), checkpoint_weights(ckpt, "step-000016")
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    ea, eb = _export(ref), _export(resumed)
    assert [k for k in ea if not torch.equal(ea[k], eb[k])] == []
    # the learning rate of every step (warmup, then cosine) is the uninterrupted run's, across the kill at step 3
    lrs = _lrs(ref)
    assert sorted(lrs) == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert lrs[1] < lrs[2] < lrs[4] and lrs[16] < lrs[5], lrs  # the schedule does warm up and decay
    assert _lrs(resumed) == lrs
    ra, rb = _last_json(out["ref"].stdout), _last_json(out["one"].stdout)
    assert ({k: v for k, v in ra.items() if k.startswith("val/")}
            == {k: v for k, v in rb.items() if k.startswith("val/")})


@pytest.mark.slow
@pytest.mark.parametrize("name,epoch,before,after", [("one-to-two", 0, 1, 2), ("two-to-one", 1, 2, 1)])
def test_world_size_change_deals_the_rest_of_the_epoch_once_and_keeps_the_global_batch(runs, name, epoch, before,
                                                                                        after):
    tmp, out = runs
    run_dir, ref = tmp / name / "r", tmp / "ref" / "r"
    stderr = out[name].stderr
    acc = {1: 4, 2: 2}
    done_steps = 3 if epoch == 0 else 12 - STEPS_PER_EPOCH
    left = 64 - done_steps * 8
    assert (f"resuming on {after} processes, saved with {before}: accumulation {acc[before]} -> {acc[after]}, "
            f"{left} samples of epoch {epoch} left") in stderr
    # the epoch's keys across the change: each once, and exactly the epoch's samples (the same set as the
    # uninterrupted run of that world size deals: positions 0..63 of the epoch's sequence)
    keys = _keys(run_dir, epoch)
    assert [k for k, n in Counter(keys).items() if n > 1] == []
    assert len(keys) == 64
    assert sorted(keys) == sorted(_keys(ref, epoch))  # positions 0..63 of the epoch's sequence, on any world size
    ds = json.loads((run_dir / "deepspeed_config.json").read_text())
    assert ds["train_batch_size"] == 8 and ds["gradient_accumulation_steps"] == acc[after]
    # the run finished its schedule and its metrics stay near the uninterrupted run's (see the tolerances above)
    got, want = _last_json(out[name].stdout), _last_json(out["ref"].stdout)
    assert got["val/num_samples"] == want["val/num_samples"]
    assert abs(got["val/loss"] - want["val/loss"]) <= VAL_LOSS_TOL, (got["val/loss"], want["val/loss"])
    assert 0.0 <= got["val/balanced_accuracy"] <= 1.0
    assert (run_dir / "checkpoints" / "step-000016").is_dir()


def test_epoch_checkpoints_written_before_mid_epoch_checkpoints_resume_at_the_next_epoch():
    """Client state of an epoch checkpoint (today's format, and the epoch-end format): no mid-epoch resume."""
    from mmlnb_dist.core.distributed import DistEnv, plan_batch
    from mmlnb_dist.recipes.epochs import mid_epoch_resume

    env, plan = DistEnv.from_environment(), plan_batch(8, 1, None)
    assert mid_epoch_resume({"data_position": {"next_epoch": 2, "granularity": "epoch"}}, env, plan, 0, None) is None
    assert mid_epoch_resume({"data_position": {"next_epoch": 2, "granularity": "epoch", "world_size": 2,
                                               "accumulation": 1}}, env, plan, 0, None) is None


def test_a_world_size_change_says_how_many_left_over_samples_the_epoch_drops(caplog):
    """91 samples, 48 consumed on 1 process, resumed on 2: 43 left, 21 per rank, 1 not trained this epoch. The log
    used to say "43 samples of epoch 0 left" and train 42 without a word (the docs said "exactly once")."""
    import logging

    from mmlnb_dist.core.distributed import DistEnv, plan_batch
    from mmlnb_dist.data.position import DataPosition, redeal_slot
    from mmlnb_dist.recipes.epochs import mid_epoch_resume

    class Recorder:
        def __init__(self):
            self.params, self.tags = {}, {}

        def set_tags(self, tags):
            self.tags.update(tags)

        def log_params(self, params):
            self.params.update(params)

    pos = DataPosition(epoch=0, step_in_epoch=6, world_size=1, num_workers=0, micro_batch=8, accumulation=1,
                       epoch_positions=91, consumed={"0/0": list(range(48))}, batches={"0/0": 6})
    env, plan, logger = DistEnv(rank=0, world_size=2, local_rank=0), plan_batch(8, 2, None), Recorder()
    with caplog.at_level(logging.INFO, logger="mmlnb_dist"):
        resume = mid_epoch_resume({"data_position": pos.to_state(), "tag": "step-000006"}, env, plan, 0, logger)
    assert resume is not None and not resume.same_layout
    trained = [p for rank in range(2) for p in redeal_slot(pos.remaining(), rank, 2, 0, plan.micro_batch, 0)[0]]
    assert len(trained) == 42 and len(set(trained)) == 42  # what the ranks really train
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("resuming on 2 processes"))
    assert "43 samples of epoch 0 left" in line and "21 each, 1 left over and not trained this epoch" in line
    assert logger.params["resume.step-000006.samples_dropped"] == 1
