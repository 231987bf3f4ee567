"""Fault drill: `finetune-vlm` killed with SIGKILL after a checkpoint, resumed with run.resume=true, ends with the
adapter of an uninterrupted run, bit for bit, with LoRA dropout on.

Which checkpoint to wait for is a seeded random choice (MMLNB_DRILL_SEED, printed); the kill is decided by the
checkpoint folder appearing (a tag folder exists only once its save completed: core.checkpoint renames it from
`.partial-<tag>`), never by a sleep, so the process dies somewhere after that checkpoint: in a training step, in
validation, or in the middle of writing the next checkpoint.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from support.vlm import ROOT, make_pairs

pytestmark = pytest.mark.slow

PIX = 56 * 56
STEPS, EVERY = 10, 2
SEED = int(os.environ.get("MMLNB_DRILL_SEED", "20261201"))


def _command(tmp: Path, name: str, *extra: str):
    return [sys.executable, "-m", "mmlnb_dist.cli", "finetune-vlm", "--config", "launch/profiles/cpu-demo.yaml",
            f"vlm.pairs={tmp / 'pairs'}", f"run.output_dir={tmp / 'runs'}", f"run.name={name}",
            f"vlm.cache_dir={tmp / 'cache'}",
            "vlm.tiny_vision=random", f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}",
            "tracking.backends=[stdout]", "vlm.global_batch_size=4", f"vlm.max_steps={STEPS}",
            f"vlm.checkpoint_every={EVERY}", "vlm.lora.dropout=0.1", "vlm.lr=1e-2", "vlm.log_every=1",
            "vlm.val_max_samples=4", *extra]


ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
           TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))


def _run(cmd) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _kill_after_checkpoint(cmd, tag_dir: Path, log_path: Path, deadline_s: float = 600.0) -> None:
    """Start `cmd`, SIGKILL it as soon as `tag_dir` exists (polled; the file decides, not the clock)."""
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=out, stderr=subprocess.STDOUT)
        start = time.monotonic()
        try:
            while not tag_dir.is_dir():
                assert proc.poll() is None, f"exited ({proc.returncode}) before {tag_dir.name}:\n" \
                                            + log_path.read_text()[-3000:]
                assert time.monotonic() - start < deadline_s, f"no {tag_dir.name} (hung?)"  # a guard, not a decision
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed ({proc.returncode})"


def _adapter(run_dir: Path):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter/adapter_model.safetensors"))


def test_killed_finetune_resumes_to_the_uninterrupted_adapter(tmp_path):
    make_pairs(tmp_path / "pairs", n=32)  # 24 training pairs: 6 steps of 4 per epoch, 10 steps cross an epoch
    target = random.Random(SEED).choice(range(EVERY, STEPS, EVERY))
    print(f"drill seed {SEED}: kill after checkpoint step {target}")
    _run(_command(tmp_path, "whole"))

    cut = tmp_path / "runs/cut"
    _kill_after_checkpoint(_command(tmp_path, "cut"), cut / f"checkpoints/step-{target:06d}", tmp_path / "cut.log")
    assert not (cut / "adapter").exists() and not (cut / "result.json").exists()
    refused = subprocess.run(_command(tmp_path, "cut"), cwd=ROOT, env=ENV, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2 and "run.resume=true" in refused.stderr  # no silent fresh start on top
    resumed = _run(_command(tmp_path, "cut", "run.resume=true"))
    assert f"resumed from {cut / 'checkpoints'}/step-" in resumed.stdout + resumed.stderr

    whole, again = _adapter(tmp_path / "runs/whole"), _adapter(cut)
    assert whole.keys() == again.keys() and any("lora_A" in k for k in whole)
    differing = [k for k in whole if not torch.equal(whole[k], again[k])]
    assert not differing, differing[:5]
