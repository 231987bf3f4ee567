"""The `vlm-fusion` trial (`pipeline.run_vlm_fusion`, a LoRA-rank search trial): fine-tune, describe, train
fusion; a trial whose adapter settings already ran reuses the cached adapter and descriptions (under
`run.cache_dir`); a new LoRA rank computes its own. Called in-process, as a Ray worker calls it (the Ray
plumbing itself is covered by test_tune.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config

from support.vlm import make_pairs

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_same_lora_settings_reuse_descriptions_and_a_new_rank_recomputes(tmp_path, monkeypatch):
    from mmlnb_dist import pipeline
    from mmlnb_dist.pipeline import steps
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    shards = make_pairs(tmp_path / "pairs", n=36, per_shard=12, val_fraction=0.34)
    calls = []
    real = steps.run_recipe

    def counting(recipe_cls, cfg, env=None, report=None):
        if recipe_cls is FinetuneVLMRecipe:  # a VLM fine-tune actually runs (not served from the cache)
            calls.append(cfg.vlm.lora.r)
        return real(recipe_cls, cfg, env, report)

    monkeypatch.setattr(steps, "run_recipe", counting)  # where the stages look it up

    def trial(name, rank):
        cfg = load_config(ROOT / "launch/profiles/cpu-demo.yaml", [
            f"run.output_dir={tmp_path / 'runs'}", f"run.name={name}", f"data.shards={shards}",
            f"vlm.pairs={shards}", f"run.cache_dir={tmp_path / 'cache'}", f"vlm.cache_dir={tmp_path / 'tiny'}",
            "vlm.tiny_vision=random",
            f"vlm.lora.r={rank}", "vlm.max_steps=4", "vlm.generation.max_new_tokens=6",
            "data.loader.num_workers=0", "train.epochs=2", "fusion.curriculum.ramp_start=1",
            "fusion.curriculum.ramp_end=2",
            "fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false}, {start_epoch: 1}]",
            "tracking.backends=[stdout]",
        ])
        return pipeline.run_vlm_fusion(cfg)

    first = trial("t0", 8)
    again = trial("t1", 8)
    other = trial("t2", 4)
    assert (first["cache/description_hit"], again["cache/description_hit"], other["cache/description_hit"]) \
        == (0.0, 1.0, 0.0)
    assert calls == [8, 4]  # the VLM was fine-tuned once per distinct LoRA setting
    assert first["descriptions"] == again["descriptions"] != other["descriptions"]
    # text features of other descriptions are cached apart, never served from the first set's table (the same
    # sample keys, other text: before the shard digest named the cache, rank 4's run reused rank 8's features)
    assert len(list((tmp_path / "cache" / "features").glob("text-*.safetensors"))) == 2
    for result in (first, again, other):
        assert 0.0 <= result["val/balanced_accuracy"] <= 1.0
