"""`train` (and `finetune-vlm`) with a missing or truncated shard stop before any work with a clean error (exit
code 2, the shard named on stderr, no traceback), through the real CLI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.writer import write_tar_shard

from support.shards import CLASSES, make_shard_set

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([PY, "-m", "mmlnb_dist.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_train_with_a_bad_shard_exits_2_naming_the_shard(tmp_path, damage):
    shards = make_shard_set(tmp_path, per_class=10, max_per_shard=5, val_fraction=0.2, size=32)
    target = shards / "train-000001.tar"
    if damage == "missing":
        target.unlink()
    else:  # cut cleanly between two samples: a tar that reads to its end without an error
        write_tar_shard(target, list(iter_shard_samples(target))[:2], CLASSES)
    proc = _run("train", "--config", "launch/profiles/cpu-demo.yaml", f"data.shards={shards}",
                f"run.output_dir={tmp_path / 'runs'}", "tracking.backends=[stdout]", "data.loader.num_workers=0")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "train-000001.tar" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()  # stopped before the run folder was made
