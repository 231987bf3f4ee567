"""Fault drill for `train` (the fusion recipe through the real CLI, `--config cpu-demo` by name, run from a folder
outside the checkout): SIGKILL at seeded random points, resume, and end bit-identical to an uninterrupted run.

Kill points are exact, whatever the machine's load: the child runs the real CLI with a test hook that, at the
chosen point, writes `<gate>/reached` and waits to be killed (`support.fusion.gated_train_command`); the parent
waits for that file, not for time. Two kills, drawn with a seeded RNG:

1. just after the checkpoint of epoch k (complete, `latest` names it). While that process is alive (held at the
   gate) a second `train` into the same folder is refused (exit 2, naming the folder and the holder's pid); after
   the kill, starting again without `run.resume` is refused (exit 2).
2. the resumed run, DURING the save of a later epoch j: DeepSpeed's files are in `checkpoints/.partial-epoch-j/`,
   no checksums, nothing renamed. The next resume must continue from epoch j-1 and ignore the torn save.

Every checkpoint and the export of the twice-killed run then equal an uninterrupted run's, tensor for tensor
(torch.equal).
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from support.fusion import (ROOT, checkpoint_weights, gate_env, gated_train_command, kill_at_gate, make_shards,
                            wait_for_gate)

PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
EPOCHS = 5
SEED = 20240611  # the drill's RNG: which epochs the kills hit
# Three phases in five epochs, so kills land in different phases: text frozen, both train, both frozen (the heads
# train from cached features).
TRAIN = [f"train.epochs={EPOCHS}", "train.checkpoint_every=1", "train.keep_checkpoints=100",
         "fusion.curriculum.ramp_start=1", "fusion.curriculum.ramp_end=3", "fusion.curriculum.step_every=1",
         "fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false}, {start_epoch: 2},"
         " {start_epoch: 4, train_image_encoder: false, train_text_encoder: false}]",
         "tracking.backends=[stdout]", "data.loader.num_workers=0", "data.loader.image_size=64", "run.seed=0"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def _args(shards: Path, out: Path, name: str, *extra: str) -> list:
    return ["train", "--config", "cpu-demo", f"data.shards={shards}", f"run.output_dir={out}", f"run.name={name}",
            *TRAIN, *extra]


def _run(cwd: Path, args: list) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "mmlnb_dist.cli", *args], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=600)


def _tags(ckpt: Path) -> list:
    return sorted(p.name for p in ckpt.iterdir() if p.name.startswith("epoch-"))


def _differ(a: dict, b: dict) -> list:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.slow
def test_train_killed_twice_at_random_points_resumes_bit_identical(tmp_path):
    from safetensors.torch import load_file

    rng = random.Random(SEED)
    k = rng.randrange(0, EPOCHS - 2)       # kill 1: after the checkpoint of epoch k
    j = rng.randrange(k + 1, EPOCHS)       # kill 2: during the save of epoch j > k
    shards = make_shards(tmp_path / "data", n=90, size=64)
    out, work = tmp_path / "runs", tmp_path / "elsewhere"  # commands run outside the checkout
    work.mkdir()

    ref = _run(work, _args(shards, out, "ref"))
    assert ref.returncode == 0, ref.stderr[-4000:]

    run_dir = out / "drill"
    ckpt = run_dir / "checkpoints"

    # kill 1, after checkpoint k; while it is held there, a second job into the folder is refused
    gate1 = tmp_path / "gate1"
    first = subprocess.Popen(gated_train_command(PY, _args(shards, out, "drill")), cwd=work,
                             env=gate_env(_env(), gate1, f"saved:epoch-{k:04d}"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        assert wait_for_gate(first, gate1) == f"saved:epoch-{k:04d}"
        second = _run(work, _args(shards, out, "drill", "run.resume=true"))
        assert second.returncode == 2, second.stderr[-3000:]
        assert str(run_dir) in second.stderr and f"pid {first.pid}" in second.stderr, second.stderr[-3000:]
    finally:
        first.kill()
        first.wait()
    assert (ckpt / "latest").read_text() == f"epoch-{k:04d}"
    assert _tags(ckpt)[-1] == f"epoch-{k:04d}" and not (run_dir / "export").exists()

    fresh = _run(work, _args(shards, out, "drill"))  # without run.resume: refused, nothing touched
    assert fresh.returncode == 2, fresh.stderr[-3000:]
    assert "run.resume=true" in fresh.stderr and str(ckpt) in fresh.stderr, fresh.stderr[-3000:]
    assert _tags(ckpt)[-1] == f"epoch-{k:04d}"

    # kill 2: the resumed run, in the middle of saving epoch j
    gate2 = tmp_path / "gate2"
    resumed = subprocess.Popen(gated_train_command(PY, _args(shards, out, "drill", "run.resume=true")), cwd=work,
                               env=gate_env(_env(), gate2, f"saving:epoch-{j:04d}"), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    assert kill_at_gate(resumed, gate2) == f"saving:epoch-{j:04d}"
    partial = ckpt / f".partial-epoch-{j:04d}"
    assert partial.is_dir() and any(partial.rglob("*model_states.pt")), "the kill did not land inside the save"
    assert not (partial / "checksums.json").exists() and not (ckpt / f"epoch-{j:04d}").exists()
    assert (ckpt / "latest").read_text() == f"epoch-{j - 1:04d}"

    final = _run(work, _args(shards, out, "drill", "run.resume=true"))
    assert final.returncode == 0, final.stderr[-4000:]
    assert f"resumed from {ckpt / f'epoch-{j - 1:04d}'}" in final.stderr, final.stderr[-4000:]
    assert not [p.name for p in ckpt.iterdir() if p.name.startswith(".partial-")]

    # every checkpoint (the last one included) and the export equal the uninterrupted run's, bit for bit
    ref_ckpt = out / "ref" / "checkpoints"
    assert _tags(ckpt) == _tags(ref_ckpt) == [f"epoch-{e:04d}" for e in range(EPOCHS)]
    for tag in _tags(ckpt):
        assert _differ(checkpoint_weights(ref_ckpt, tag), checkpoint_weights(ckpt, tag)) == [], tag
    assert _differ(load_file(str(out / "ref" / "export" / "model.safetensors")),
                   load_file(str(run_dir / "export" / "model.safetensors"))) == []
    a = json.loads((out / "ref" / "metrics.json").read_text())
    b = json.loads((run_dir / "metrics.json").read_text())
    assert {key: b[key] for key in a if key.startswith("val/")} == {key: a[key] for key in a if key.startswith("val/")}
