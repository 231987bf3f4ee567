"""Drill: a training run whose loss goes NaN (a learning rate far too high) stops at that optimizer step with one
clear error (exit code 2) instead of training on with NaN weights, reporting metrics computed from NaN scores,
choosing and exporting a NaN model as the best one. Nothing of the diverged step is saved: every checkpoint the
run left holds finite weights, so the run's last good state is kept; the CLIP and fusion drills also check that
the MLflow run is ended FAILED, not left RUNNING.

Fusion and CLIP training and VLM LoRA fine-tuning, each on its tiny CPU set; the two-rank agreement (one rank's NaN
stops every rank at the same step) is in tests/core/test_divergence.py."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from support.cli import run_cli


def _cli(args) -> tuple:
    code, out, err = run_cli(args)
    return code, out + err


def _all_checkpoints_finite(run_dir: Path) -> list:
    """The tags of the run's checkpoints; asserts each one's weights are finite."""
    from mmlnb_dist.core.checkpoint import fp32_state_dict_from_checkpoint

    tags = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.is_dir() and not p.name.startswith("."))
    for tag in tags:
        _, state = fp32_state_dict_from_checkpoint(run_dir / "checkpoints", tag)
        bad = [k for k, v in state.items() if torch.is_floating_point(v) and not bool(torch.isfinite(v).all())]
        assert not bad, f"checkpoint {tag} holds non-finite weights: {bad[:3]}"
    return tags


def _assert_tracked_as_failed(run_dir: Path) -> None:
    """The MLflow run the training logged to (`tracking/train.json` names it) was ended FAILED with an end time:
    one left RUNNING stays in the MLflow UI as a run still training, with no end and no sign it diverged."""
    import mlflow

    record = json.loads((run_dir / "tracking" / "train.json").read_text())
    info = mlflow.MlflowClient(record["tracking_uri"]).get_run(record["run_id"]).info
    assert (info.status, info.end_time is not None) == ("FAILED", True), info


def test_a_clip_run_whose_loss_goes_nan_stops_at_that_step_and_keeps_its_finite_checkpoints(tmp_path):
    from support.clip import CLIP_PROFILE, caption_shards

    shards = caption_shards(tmp_path, n=96, size=32)
    args = ["train", "--config", str(CLIP_PROFILE), f"data.shards={shards}", f"run.output_dir={tmp_path / 'runs'}",
            "run.name=lr", "data.loader.num_workers=0", "data.loader.image_size=32",
            "tracking.backends=[stdout,mlflow]", "train.epochs=2", "train.checkpoint_every_steps=1", "train.lr=1e3",
            "clip.tower_lr=1e3"]
    code, out = _cli(args)
    assert code == 2, out[-3000:]
    assert "training diverged at step" in out and "of epoch 0" in out, out[-3000:]
    assert "train.lr=1000.0" in out and "clip.tower_lr=1000.0" in out, out[-3000:]  # the settings to change
    run_dir = tmp_path / "runs" / "lr"
    assert not (run_dir / "export").exists() and not (run_dir / "metrics.json").exists()
    _all_checkpoints_finite(run_dir)
    # the rows the run logged before it stopped are finite: no NaN loss reaches the curves
    losses = [r["train/loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
              if "train/loss" in r]
    assert all(math.isfinite(v) for v in losses), losses
    _assert_tracked_as_failed(run_dir)


def test_a_fusion_run_whose_loss_goes_nan_stops_before_it_saves_nan_weights(tmp_path, monkeypatch):
    """The fusion classifier's cross-entropy stays finite even at lr 1e8 (chance accuracy, losses of 1e30), so the
    NaN comes from its loss from the fourth micro batch on, as an fp16 overflow or a poisoned batch gives it."""
    from mmlnb_dist.recipes.fusion import loop

    from support.fusion import CPU_DEMO, make_shards

    calls = {"n": 0}
    real_loss = loop.curriculum_loss

    def nan_from_the_fourth(*args, **kwargs):
        calls["n"] += 1
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if calls["n"] >= 4 else loss

    monkeypatch.setattr(loop, "curriculum_loss", nan_from_the_fourth)
    shards = make_shards(tmp_path, n=60, size=32)
    args = ["train", "--config", str(CPU_DEMO), f"data.shards={shards}", f"run.output_dir={tmp_path / 'runs'}",
            "run.name=nan", "tracking.backends=[stdout,mlflow]", "data.loader.num_workers=0",
            "data.loader.image_size=32", "data.loader.augment=false", "train.epochs=2", "train.global_batch_size=8",
            "train.checkpoint_every_steps=1", "train.keep_checkpoints=100"]
    code, out = _cli(args)
    assert code == 2, out[-3000:]
    assert "training diverged at step 4 of epoch 0" in out and "train.lr=" in out, out[-3000:]
    run_dir = tmp_path / "runs" / "nan"
    assert not (run_dir / "export").exists()
    assert _all_checkpoints_finite(run_dir) == ["step-000001", "step-000002", "step-000003"]
    _assert_tracked_as_failed(run_dir)


@pytest.mark.slow
def test_vlm_lora_fine_tuning_whose_loss_goes_nan_stops_at_that_step(tmp_path, monkeypatch):
    """LoRA fine-tuning saturates at lr 1e6 (the loss sits at log(vocabulary)) rather than going NaN, so the NaN
    comes from the images of optimizer step 3 on (index 2), as a poisoned batch or an fp16 overflow gives it."""
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    from support.vlm import ROOT, make_pairs

    real = FinetuneVLMRecipe.micro_batches

    def poisoned_from_step_2(self, step):
        batches = real(self, step)
        if step >= 2:
            for batch in batches:
                batch["pixel_values"] = batch["pixel_values"] * float("nan")
        return batches

    monkeypatch.setattr(FinetuneVLMRecipe, "micro_batches", poisoned_from_step_2)
    pix = 56 * 56
    make_pairs(tmp_path / "pairs", n=16)
    args = ["finetune-vlm", "--config", str(ROOT / "launch/profiles/cpu-demo.yaml"), f"vlm.pairs={tmp_path / 'pairs'}",
            f"run.output_dir={tmp_path / 'runs'}", "run.name=nan", f"vlm.cache_dir={tmp_path / 'cache'}",
            "vlm.tiny_vision=random", f"vlm.min_pixels={pix}", f"vlm.max_pixels={pix}", "tracking.backends=[stdout]",
            "vlm.global_batch_size=4", "vlm.max_steps=8", "vlm.checkpoint_every=1", "vlm.eval_every=100"]
    code, out = _cli(args)
    assert code == 2, out[-3000:]
    assert "training diverged at step 3" in out and "vlm.lr=" in out, out[-3000:]
    run_dir = tmp_path / "runs" / "nan"
    assert not (run_dir / "adapter").exists()
    assert _all_checkpoints_finite(run_dir) == ["step-000001", "step-000002"]  # (it keeps the last two)
