"""VLM fine-tuning resumes like fusion training: periodic checkpoints by default, a fresh start never lands on an
old run's checkpoints, a resume may not change settings that decide the result, and a run that fails after a
checkpoint and is resumed ends with the adapter of an uninterrupted run, bit for bit, with LoRA dropout on.

The in-process runs are one process, ZeRO-0, the tiny Qwen2.5-VL (a few seconds each); the kill -9 version of the
same check, through the CLI, is tests/drills/test_drill_finetune_vlm.py."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from support.vlm import ROOT, Interrupted, finetune_config, make_pairs

PROFILES = sorted((ROOT / "launch/profiles").glob("*.yaml"))


def _cfg(tmp: Path, name: str, *extra: str):
    return finetune_config(tmp, name, "vlm.max_steps=6", "vlm.checkpoint_every=2", "vlm.eval_every=3",
                           "vlm.val_max_samples=4", *extra)


def _adapter(run_dir: Path):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter/adapter_model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run, and one that fails at step 3 (after the step-2 checkpoint) and is resumed."""
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    tmp = tmp_path_factory.mktemp("vlm_resume")
    make_pairs(tmp / "pairs", n=24)
    whole = run(FinetuneVLMRecipe, _cfg(tmp, "whole"))

    def fail_at_step_3(step, metrics):
        if step == 3:
            raise Interrupted(step)

    with pytest.raises(Interrupted):
        run(FinetuneVLMRecipe, _cfg(tmp, "cut"), report=fail_at_step_3)
    cut = Path(whole["run_dir"]).parent / "cut"
    assert (cut / "checkpoints/step-000002").is_dir() and not (cut / "adapter").exists()
    resumed = run(FinetuneVLMRecipe, _cfg(tmp, "cut", "run.resume=true"))
    return tmp, whole, resumed


def test_checkpoints_are_periodic_by_default():
    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.vlm.config import VLMConfig

    assert VLMConfig().checkpoint_every is not None
    for path in PROFILES:  # profiles with a vlm section set it; the others (clip-multilabel) get the default
        assert load_config(path).vlm.checkpoint_every, f"{path.name} leaves vlm.checkpoint_every unset"


@pytest.mark.slow
def test_resumed_adapter_is_bit_identical_with_lora_dropout(runs):
    tmp, whole, resumed = runs
    assert resumed["step"] == whole["step"] == 6
    a, b = _adapter(Path(whole["run_dir"])), _adapter(Path(resumed["run_dir"]))
    assert a.keys() == b.keys() and any("lora_A" in k for k in a)
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, differing[:5]
    assert resumed["train/loss"] == whole["train/loss"] and resumed["val/loss"] == whole["val/loss"]


@pytest.mark.slow
def test_fresh_start_on_old_checkpoints_is_refused_before_any_work(runs):
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    tmp, whole, _ = runs
    run_dir = Path(whole["run_dir"])
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match="run.resume=true"):
        run(FinetuneVLMRecipe, _cfg(tmp, "whole"))
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()} == before


def test_resume_refuses_settings_that_change_the_adapter(tmp_path):
    """Which config keys a resume may change: decided by the sections the recipe reads (run, distributed, vlm)."""
    from mmlnb_dist.core.config import save_config
    from mmlnb_dist.core.errors import UserError
    from mmlnb_dist.core.recipe import check_resume_config
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    stored = _cfg(tmp_path, "r")
    run_dir = Path(stored.run.dir)
    save_config(stored, run_dir / "config.yaml")
    # Not read by this recipe, or only about logging and how long to train: allowed.
    allowed = ["data.shards=elsewhere", "train.lr=0.5", "fusion.model.dropout=0.5", "vlm.max_steps=9",
               "vlm.log_every=1", "vlm.eval_every=2", "vlm.checkpoint_every=3", "vlm.generation.max_new_tokens=7",
               "tracking.backends=[]"]
    check_resume_config(_cfg(tmp_path, "r", "run.resume=true", *allowed), run_dir, FinetuneVLMRecipe, record=False)
    for key, value in [("vlm.lr", "0.5"), ("vlm.lora.dropout", "0.2"), ("vlm.prompt", "other"), ("run.seed", "7"),
                       ("distributed.zero_stage", "2"), ("vlm.global_batch_size", "8")]:
        with pytest.raises(UserError, match=key.replace(".", r"\.")):
            check_resume_config(_cfg(tmp_path, "r", "run.resume=true", f"{key}={value}"), run_dir,
                                FinetuneVLMRecipe, record=False)
