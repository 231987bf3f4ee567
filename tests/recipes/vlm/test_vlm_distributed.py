"""2-process DeepSpeed ZeRO-3 LoRA fine-tuning of the tiny Qwen2.5-VL (torchrun, gloo, CPU, torch_adam):
the loss falls, the adapter is complete (gathered across ranks) and equals the consolidated checkpoint tensor for
tensor, resume continues from the saved step, and the merged export matches base + adapter.

Every tensor of the tiny model is smaller than DeepSpeed's default `stage3_param_persistence_threshold` (1e5
elements), which keeps such tensors whole on every rank: with the default, ZeRO-3 would never partition them and
the adapter gather would go untested. The run uses a DeepSpeed JSON with the threshold at 0."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from support.vlm import ROOT, make_pairs, torchrun

pytestmark = pytest.mark.slow  # every test here reads the 2-process torchrun run of the `trained` fixture

PIX = 56 * 56


ZERO3_PARTITION_ALL = {"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0,
                                             "stage3_gather_16bit_weights_on_model_save": True}}


def _args(tmp: Path, *extra: str):
    return ["finetune-vlm", "--config", "launch/profiles/cpu-demo.yaml", f"vlm.pairs={tmp / 'pairs'}",
            f"run.output_dir={tmp / 'runs'}", "run.name=z3", "distributed.zero_stage=3",
            f"distributed.deepspeed_config={tmp / 'zero3.json'}", "vlm.log_every=1",
            "vlm.checkpoint_every=3", "vlm.lr=1e-2", f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}",
            f"vlm.cache_dir={tmp / 'cache'}",
            "vlm.tiny_vision=random", "tracking.backends=[stdout]", "vlm.gradient_checkpointing=true",
            "vlm.val_max_samples=8", *extra]


def _check(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vlm_z3")
    make_pairs(tmp / "pairs", n=48)
    (tmp / "zero3.json").write_text(json.dumps(ZERO3_PARTITION_ALL))
    proc = torchrun(_args(tmp, "vlm.max_steps=6"))
    _check(proc)
    (tmp / "first_run.log").write_text(proc.stdout + proc.stderr)
    return tmp


def test_every_trainable_tensor_was_partitioned(trained):
    """The run really exercised the gather: no trainable tensor stayed whole on every rank."""
    import re

    log = (trained / "first_run.log").read_text()
    counts = re.search(r"ZeRO-3: (\d+) of (\d+) trainable tensors are partitioned", log)
    assert counts and int(counts[1]) == int(counts[2]) > 0, counts


def test_adapter_equals_the_consolidated_checkpoint(trained):
    """Every saved adapter tensor equals the trained fp32 weight that zero_to_fp32 consolidates from the final
    ZeRO-3 checkpoint (the adapter is written right after it): exactly, and none is missing or empty."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.checkpoint import fp32_state_dict_from_checkpoint
    from mmlnb_dist.recipes.vlm import model as V

    tag, consolidated = fp32_state_dict_from_checkpoint(trained / "runs/z3/checkpoints", "step-000006")
    cfg = load_config(ROOT / "launch/profiles/cpu-demo.yaml")
    base, _ = V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=trained / "cache")
    peft_model = V.apply_lora(base, cfg.vlm.lora)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable <= set(consolidated), sorted(trainable - set(consolidated))[:5]
    expected = get_peft_model_state_dict(peft_model, state_dict={n: consolidated[n] for n in trainable})
    adapter = load_file(str(trained / "runs/z3/adapter/adapter_model.safetensors"))
    assert set(adapter) == set(expected)
    differing = [k for k in expected if adapter[k].numel() == 0 or not torch.equal(adapter[k], expected[k])]
    assert not differing, differing[:5]


def _logits(model, processor, tmp: Path):
    from mmlnb_dist.data.shardset import ShardSet
    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.finetune import read_pairs

    pairs = read_pairs(ShardSet.open(tmp / "pairs"), "val")[:3]
    enc = [V.encode_pair(processor, p.image, "describe", p.text, 256) for p in pairs]
    batch = V.collate(enc, processor.tokenizer.pad_token_id)
    batch.pop("labels")
    with torch.no_grad():
        return model.eval()(**batch).logits


def test_loss_falls_and_adapter_is_complete(trained):
    from safetensors.torch import load_file

    rows = [json.loads(line) for line in (trained / "runs/z3/metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.5, losses
    adapter = load_file(str(trained / "runs/z3/adapter/adapter_model.safetensors"))
    assert adapter and all(t.numel() > 0 for t in adapter.values())
    assert any("lora_A" in k for k in adapter) and any("visual.merger" in k for k in adapter)
    assert not any("visual.blocks" in k for k in adapter)  # vision tower not adapted by default


def test_adapter_reproduces_trained_model(trained):
    """Fresh base + saved adapter == fresh base with the trained weights taken from the ZeRO-3 checkpoint."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.vlm import model as V

    cfg = load_config(ROOT / "launch/profiles/cpu-demo.yaml")
    base, proc = V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=trained / "cache")
    reloaded = V.load_adapter(base, trained / "runs/z3/adapter")
    a = _logits(reloaded, proc, trained)

    trained_sd = get_fp32_state_dict_from_zero_checkpoint(str(trained / "runs/z3/checkpoints"),
                                                          exclude_frozen_parameters=True)
    fresh, _ = V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=trained / "cache")
    fresh = V.apply_lora(fresh, cfg.vlm.lora)
    missing = set(trained_sd) - set(dict(fresh.named_parameters()))
    assert not missing, sorted(missing)[:5]
    fresh.load_state_dict(trained_sd, strict=False)
    b = _logits(fresh, proc, trained)
    base2, _ = V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=trained / "cache")
    c = _logits(base2, proc, trained)
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    assert not torch.allclose(a, c, atol=1e-3)  # the adapter changes the model


def test_resume_continues_from_saved_step(trained):
    proc = torchrun(_args(trained, "vlm.max_steps=8", "run.resume=true"))
    _check(proc)
    assert "resumed from" in proc.stdout + proc.stderr and "at step 6" in proc.stdout + proc.stderr
    result = json.loads((trained / "runs/z3/result.json").read_text())
    assert result["step"] == 8
    steps = [json.loads(line)["step"] for line in (trained / "runs/z3/metrics.jsonl").read_text().splitlines()]
    assert 7 in steps and 8 in steps and steps.count(7) == 1


def test_merged_export_matches_base_plus_adapter(trained):
    from transformers import Qwen2_5_VLForConditionalGeneration

    from mmlnb_dist.recipes.vlm import model as V

    out = trained / "merged"
    cmd = [sys.executable, "-m", "mmlnb_dist.cli", "export-vlm", "--base", "tiny", "--adapter",
           str(trained / "runs/z3/adapter"), "--out", str(out), "--config", "launch/profiles/cpu-demo.yaml",
           f"vlm.cache_dir={trained / 'cache'}",
           "vlm.tiny_vision=random", f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}"]
    _check(subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600))
    assert (out / "model.safetensors").is_file()
    merged = Qwen2_5_VLForConditionalGeneration.from_pretrained(out)
    base, proc = V.load_vlm("tiny", min_pixels=PIX, max_pixels=PIX, cache_dir=trained / "cache")
    with_adapter = V.load_adapter(base, trained / "runs/z3/adapter")
    assert torch.allclose(_logits(merged, proc, trained), _logits(with_adapter, proc, trained), atol=1e-4)
