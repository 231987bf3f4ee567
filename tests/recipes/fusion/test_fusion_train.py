"""End-to-end fusion training on CPU: 2-process DeepSpeed (ZeRO-1, gloo), kill-and-resume, the export, the
shipped DeepSpeed JSONs, and config errors caught before work starts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmlnb_dist.core.tracking.server import free_port

from support.fusion import (CPU_DEMO, ROOT, checkpoint_weights, gate_env, gated_train_command, kill_at_gate,
                            make_shards)
from support.processes import run_group

PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
BASE = ["tracking.backends=[stdout]", "data.loader.num_workers=0", "data.loader.image_size=64", "run.seed=0"]
# A short schedule with all three phases: text frozen, both train, both frozen (cached features).
SHORT = ["train.epochs=4", "fusion.curriculum.ramp_start=1", "fusion.curriculum.ramp_end=3",
         "fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false}, {start_epoch: 1},"
         " {start_epoch: 3, train_image_encoder: false, train_text_encoder: false}]"]


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> Path:
    """240 synthetic patches at 64 px (180 train / 60 val), built once per session."""
    return make_shards(tmp_path_factory.mktemp("fusion"), n=240, size=64)


def _cli(*args: str) -> list:
    return [PY, "-m", "mmlnb_dist.cli", *args]


def _env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _last_json(stdout: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


@pytest.mark.slow
def test_two_process_deepspeed_zero1_run_beats_chance(shards, tmp_path):
    """torchrun, 2 CPU processes, gloo, ZeRO-1, seed 0: validation balanced accuracy >= 0.55 (chance 0.33)."""
    cmd = [PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "mmlnb_dist.cli", "train", "--config", str(CPU_DEMO), f"data.shards={shards}",
           f"run.output_dir={tmp_path}", "run.name=ds2", "distributed.zero_stage=1", *BASE]
    proc = run_group(cmd, cwd=ROOT, env=_env(), timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = _last_json(proc.stdout)
    assert result["val/num_samples"] == 60  # each validation sample exactly once across the 2 ranks
    assert result["val/balanced_accuracy"] >= 0.55, result
    cfg = json.loads((tmp_path / "ds2" / "deepspeed_config.json").read_text())
    assert cfg["zero_optimization"]["stage"] == 1 and cfg["train_micro_batch_size_per_gpu"] == 16
    assert (tmp_path / "ds2" / "export" / "model.safetensors").is_file()


def _train_cmd(shards: Path, out: Path, *extra: str) -> list:
    return _cli("train", "--config", str(CPU_DEMO), f"data.shards={shards}", f"run.output_dir={out}",
                "run.name=r", "train.keep_checkpoints=1", *BASE, *SHORT, *extra)


def _weights(export_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(export_dir / "model.safetensors"))


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights_and_metrics(shards, tmp_path):
    """SIGKILL right after the checkpoint of epoch 1 of 4 (an exact point, whatever the load: the child waits
    there to be killed, see `support.fusion.gated_train_command`), resume with run.resume=true: the LAST
    checkpoint (trained entirely after the kill) and the export are bit-identical to an uninterrupted run's (both
    single-process CPU, seed 0), and the validation metrics from training, `evaluate --export` and
    `evaluate --checkpoint` all equal the uninterrupted run's."""
    ref = subprocess.run(_train_cmd(shards, tmp_path / "ref"), cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-4000:]

    killed_dir = tmp_path / "killed"
    gate = tmp_path / "gate"
    proc = subprocess.Popen(gated_train_command(PY, _train_cmd(shards, killed_dir)[3:]), cwd=ROOT,
                            env=gate_env(_env(), gate, "saved:epoch-0001"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    assert kill_at_gate(proc, gate) == "saved:epoch-0001"
    ckpt = killed_dir / "r" / "checkpoints"
    # killed mid-run, told by the files: epoch 1 is the newest checkpoint, nothing of epochs 2-3, no export
    assert (ckpt / "latest").read_text() == "epoch-0001"
    assert not (ckpt / "epoch-0002").exists() and not (ckpt / "epoch-0003").exists()
    assert not (killed_dir / "r" / "export").exists() and not (killed_dir / "r" / "metrics.json").exists()

    resumed = subprocess.run(_train_cmd(shards, killed_dir, "run.resume=true"), cwd=ROOT, env=_env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert f"resumed from {ckpt / 'epoch-0001'}" in resumed.stderr  # logged by core.checkpoint (stderr)
    assert "continuing at epoch 2" in resumed.stderr

    # the last checkpoint and the export: bit for bit
    last_ref = checkpoint_weights(tmp_path / "ref" / "r" / "checkpoints", "epoch-0003")
    last_resumed = checkpoint_weights(ckpt, "epoch-0003")
    for name, (a, b) in {"last checkpoint": (last_ref, last_resumed),
                         "export": (_weights(tmp_path / "ref" / "r" / "export"),
                                    _weights(killed_dir / "r" / "export"))}.items():
        assert a.keys() == b.keys(), name
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert differ == [], f"{name}: {differ}"
    ra, rb = _last_json(ref.stdout), _last_json(resumed.stdout)
    assert ra["best_epoch"] == rb["best_epoch"]
    for key, value in ra.items():
        if key.startswith("val/"):
            assert rb[key] == value, key
    # retention: keep_checkpoints=1 plus the best
    tags = sorted(p.name for p in ckpt.iterdir() if p.name.startswith("epoch-"))
    assert "epoch-0003" in tags and len(tags) in (1, 2), tags
    assert not [p.name for p in ckpt.iterdir() if p.name.startswith(".partial-")]

    # the export rebuilds offline and predicts
    from mmlnb_dist.recipes.fusion.export import load_exported_model

    model, tokenize, classes = load_exported_model(killed_dir / "r" / "export")
    assert classes == ["UD", "PD", "D"]
    with torch.no_grad():
        out = model(pixel_values=torch.randn(2, 3, 64, 64), **tokenize(["small round blue cells", ""]))
    assert out["logits"].shape == (2, 3)

    # evaluate from the export and from the checkpoints folder (the best tag) give the metrics training reported
    for source in (["--export", str(killed_dir / "r" / "export")], ["--checkpoint", str(ckpt)]):
        ev = subprocess.run(_cli("evaluate", "--config", str(CPU_DEMO), f"data.shards={shards}", *BASE, *source,
                                 "--json"), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
        assert ev.returncode == 0, ev.stderr[-3000:]
        got = json.loads(ev.stdout[ev.stdout.index("{"):])
        for key in ("balanced_accuracy", "accuracy", "kappa", "auroc", "loss", "num_samples"):
            assert got[key] == pytest.approx(rb[f"val/{key}"], abs=1e-6), (source[0], key)


@pytest.mark.parametrize("path", sorted((ROOT / "launch" / "deepspeed").glob("fusion_*.json")), ids=lambda p: p.stem)
def test_shipped_deepspeed_jsons_equal_the_generated_ones(path):
    from mmlnb_dist.commands.train import generated_deepspeed_config
    from mmlnb_dist.config import load_config

    _, zero, precision = path.stem.split("_")
    cfg = load_config(ROOT / "launch/profiles/rtx4090.yaml",
                      [f"distributed.zero_stage={zero.removeprefix('zero')}", f"distributed.precision={precision}"])
    assert json.loads(path.read_text()) == generated_deepspeed_config(cfg, world_size=1)


def test_all_nine_deepspeed_jsons_ship():
    names = {p.stem for p in (ROOT / "launch" / "deepspeed").glob("fusion_*.json")}
    assert names == {f"fusion_zero{z}_{p}" for z in (0, 1, 2) for p in ("bf16", "fp16", "fp32")}


@pytest.mark.parametrize("override,message", [
    ("train.global_batch_size=0", "global_batch_size"),
    ("fusion.model.mode=late", "fusion.model.mode"),
    ("train.best_metric=speed", "train.best_metric"),
    ("fusion.model.image_encoder.name=alexnet", "alexnet"),
    ("data.shards=/nonexistent/shards", "data.shards"),
])
def test_train_rejects_a_bad_config_before_work_starts(override, message, tmp_path, shards, capsys, monkeypatch):
    from mmlnb_dist.cli import main
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    def no_work(self):
        raise AssertionError("setup started: the config error was not caught before work")

    monkeypatch.setattr(FusionRecipe, "setup", no_work)
    args = ["train", "--config", str(CPU_DEMO), f"data.shards={shards}", f"run.output_dir={tmp_path}",
            "tracking.backends=[stdout]", override]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "cpu-demo").exists()  # nothing was written
