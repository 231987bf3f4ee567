"""`finetune-vlm`'s `base_model_seconds` (the time spent building the `tiny` base model on first use, which the
pipeline report shows apart from fine-tuning) was timed in setup, but the recipe's `check` (its preflight of LoRA
names and prompt lengths) builds the model first: a 122 s build was reported as 0.0001 s. It now counts the build
wherever this process did it, once."""
from __future__ import annotations


def test_the_build_in_check_is_reported_once(tmp_path, monkeypatch):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm import tiny_qwen
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    from support.vlm import finetune_config, make_pairs

    make_pairs(tmp_path / "pairs", n=8, per_shard=8, val_fraction=0.0)
    clock = [1000.0]
    calls = []
    build = tiny_qwen.ensure_tiny_model

    def ensure(**kwargs):  # a build moves the (stand-in) clock by 42 s; a cached model by nothing
        path = build(**kwargs)
        calls.append(path)
        clock[0] += 42.0 if len(calls) == 1 else 0.0
        return path

    monkeypatch.setattr(tiny_qwen, "ensure_tiny_model", ensure)
    monkeypatch.setattr("time.perf_counter", lambda: clock[0])  # a stand-in clock: no timing
    first = run(FinetuneVLMRecipe, finetune_config(tmp_path, "a", "vlm.max_steps=1", "vlm.checkpoint_every=null"))
    assert len(calls) >= 2  # built by check's preflight, resolved again in setup
    assert first["base_model_seconds"] == 42.0
    again = run(FinetuneVLMRecipe, finetune_config(tmp_path, "b", "vlm.max_steps=1", "vlm.checkpoint_every=null"))
    assert again["base_model_seconds"] == 0.0  # cached: no build to report
