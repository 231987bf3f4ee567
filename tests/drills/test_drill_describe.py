"""Fault drill for `describe`: SIGKILL the real CLI at a seeded random progress event, rerun, and get exactly the
output of an uninterrupted run (the profile's sampling is drawn per image, so it is deterministic); a rerun with
another adapter into a killed folder is refused naming the adapter digest, and `--restart` starts over.

The kill point is decided from files, not from time: the parent counts finished batches (lines of the
`.progress/*.jsonl` journals plus the samples of finished shards) and kills once the seeded event is reached.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmlnb_dist.data.map import PROGRESS_DIR
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardSet

from support.vlm import make_pairs, write_random_adapter

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
PIX = 56 * 56
BATCH = 2


def _overrides(tmp: Path):
    return [f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}", f"vlm.cache_dir={tmp / 'cache'}",
            "vlm.tiny_vision=random",
            "vlm.generation.max_new_tokens=8", f"vlm.generation.batch_size={BATCH}", "tracking.backends=[stdout]",
            f"run.output_dir={tmp / 'runs'}"]


def _cmd(tmp: Path, out: Path, *extra: str):
    return [PY, "-m", "mmlnb_dist.cli", "describe", "--vlm", "tiny", "--shards", str(tmp / "in"), "--out", str(out),
            *extra, "--config", "launch/profiles/cpu-demo.yaml", *_overrides(tmp)]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def _done_samples(out: Path) -> int:
    """Samples described so far, from the files a run leaves: finished shards, and the journal lines of shards not
    finished yet (a shard's journal is deleted just after its tar is renamed into place: counting both would count
    that shard twice for a moment, and a kill then would land earlier than the count said)."""
    finished = sorted(out.glob("*.tar"))
    names = {f.name for f in finished}
    journal = sum(len(p.read_text().splitlines()) for p in (out / PROGRESS_DIR).glob("*.jsonl")
                  if p.stem not in names) if (out / PROGRESS_DIR).is_dir() else 0
    return journal + sum(1 for f in finished for _ in iter_shard_samples(f))


def _kill_at(tmp: Path, out: Path, event: int, *extra: str) -> None:
    """Run describe into `out` and SIGKILL it once `event` batches are on disk."""
    proc = subprocess.Popen(_cmd(tmp, out, *extra), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while proc.poll() is None and _done_samples(out) < event * BATCH:
        assert time.time() < deadline, "describe never reached the kill point"
        time.sleep(0.02)  # polling the files; the decision is the count above
    assert proc.poll() is None, "describe finished before the kill point:\n" + proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists() and _done_samples(out) >= event * BATCH


def _texts(out: Path):
    return {s["__key__"]: s["txt"].decode() for f in sorted(out.glob("*.tar")) for s in iter_shard_samples(f)}


def _adapter(tmp: Path, name: str, seed: int) -> Path:
    """A random non-zero LoRA adapter of the tiny VLM, saved as finetune-vlm saves one."""
    from mmlnb_dist.config import load_config

    cfg = load_config(ROOT / "launch/profiles/cpu-demo.yaml", _overrides(tmp))
    return write_random_adapter(cfg.vlm, tmp / name, seed, PIX)


@pytest.mark.slow
def test_describe_killed_at_a_random_point_resumes_to_the_uninterrupted_output(tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.vlm.describe import run_describe
    from mmlnb_dist.recipes.vlm.model import adapter_sha256

    make_pairs(tmp_path / "in", n=16, per_shard=4, val_fraction=0.25)
    total_batches = sum(-(-e["num_samples"] // BATCH) for _, _, e in ShardSet.open(tmp_path / "in").entries())
    a, b = _adapter(tmp_path, "adapter-a", 1), _adapter(tmp_path, "adapter-b", 2)
    cfg = load_config(ROOT / "launch/profiles/cpu-demo.yaml", _overrides(tmp_path))
    whole = run_describe(cfg, "tiny", str(a), tmp_path / "in", tmp_path / "whole", progress=False)
    assert whole["num_samples"] == 16

    rng = random.Random(20240601)
    event = rng.randint(1, total_batches // 2)  # a seeded progress event: after the k-th finished batch
    killed = tmp_path / "killed"
    _kill_at(tmp_path, killed, event, "--adapter", str(a))
    resumed = subprocess.run(_cmd(tmp_path, killed, "--adapter", str(a)), cwd=ROOT, env=_env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _texts(killed) == _texts(tmp_path / "whole")
    for f in (tmp_path / "whole").glob("*.tar"):
        assert f.read_bytes() == (killed / f.name).read_bytes(), f.name
    assert ShardSet.open(killed).manifest["splits"] == ShardSet.open(tmp_path / "whole").manifest["splits"]

    # Another adapter into a killed folder: refused, naming the adapter digest; --restart starts over.
    killed2 = tmp_path / "killed2"
    _kill_at(tmp_path, killed2, rng.randint(1, total_batches // 2), "--adapter", str(a))
    refused = subprocess.run(_cmd(tmp_path, killed2, "--adapter", str(b)), cwd=ROOT, env=_env(),
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "describe.adapter_sha256" in refused.stderr and adapter_sha256(str(b)) in refused.stderr
    assert "Traceback" not in refused.stderr
    restarted = subprocess.run(_cmd(tmp_path, killed2, "--adapter", str(b), "--restart"), cwd=ROOT, env=_env(),
                               capture_output=True, text=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    result = json.loads(restarted.stdout[restarted.stdout.index("{"):])
    assert result["described_now"] == 16 and result["num_samples"] == 16
    assert ShardSet.open(killed2).provenance["describe"]["adapter_sha256"] == adapter_sha256(str(b))
