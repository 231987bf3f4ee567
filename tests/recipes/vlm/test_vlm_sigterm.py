"""VLM LoRA fine-tuning is the longest job on a GPU (hours). A SIGTERM (a time limit, a preemption) ended it at
once, and the resume went back to its last periodic checkpoint; now it stops at the optimizer step it is in, with
a checkpoint there, and the resume ends with the adapter of an uninterrupted run, bit for bit (LoRA dropout on)."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

from support.fusion import gate_env, gated_train_command
from support.vlm import ROOT, make_pairs

PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
PIX = 56 * 56


def _env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _args(tmp, name, *extra):
    return ["finetune-vlm", "--config", str(ROOT / "launch/profiles/cpu-demo.yaml"), f"vlm.pairs={tmp / 'pairs'}",
            f"run.output_dir={tmp / 'runs'}", f"run.name={name}", f"vlm.cache_dir={tmp / 'cache'}",
            "vlm.tiny_vision=random", f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}", "tracking.backends=[stdout]",
            "vlm.global_batch_size=4", "vlm.max_steps=6", "vlm.checkpoint_every=2", "vlm.log_every=1",
            "vlm.eval_every=100", "vlm.val_max_samples=4", "vlm.lora.dropout=0.1", "vlm.lr=1e-2", *extra]


def _adapter(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter/adapter_model.safetensors"))


def test_sigterm_checkpoints_the_step_and_the_resumed_adapter_equals_an_uninterrupted_one(tmp_path):
    make_pairs(tmp_path / "pairs", n=24)
    whole = subprocess.run([PY, "-m", "mmlnb_dist.cli", *_args(tmp_path, "whole")], cwd=ROOT, env=_env(),
                           capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]

    stopped = subprocess.run(gated_train_command(PY, _args(tmp_path, "cut")), cwd=ROOT,
                             env=gate_env(_env(), tmp_path / "gate", "sigterm:3"), capture_output=True, text=True,
                             timeout=600)
    cut = tmp_path / "runs" / "cut"
    assert stopped.returncode == 130 and "SIGTERM: stopped at step 3, checkpointed" in stopped.stderr, \
        stopped.stderr[-3000:]
    assert (cut / "checkpoints" / "latest").read_text() == "step-000003"  # not the periodic step 2
    assert not (cut / "adapter").exists()

    resumed = subprocess.run([PY, "-m", "mmlnb_dist.cli", *_args(tmp_path, "cut", "run.resume=true")], cwd=ROOT,
                             env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "continuing at step 3" in resumed.stderr
    a, b = _adapter(tmp_path / "runs" / "whole"), _adapter(cut)
    assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
