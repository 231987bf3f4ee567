"""Mutation audit of the `vlm:` config section (recipes/vlm/config.py): the defaults are the documented ones (the
authors' LoRA and image size, a cosine schedule with 10% warmup, greedy decoding from the merged model), and the
bounds refuse what cannot train or would invert the resize while accepting their edges (top_k 0: no limit; equal
pixel bounds: one image size)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from mmlnb_dist.recipes.vlm.config import DEFAULT_PROMPT, GenerationConfig, LoraConfig, VLMConfig


def test_defaults_are_the_documented_settings():
    v = VLMConfig()
    lora = v.lora
    assert (lora.r, lora.alpha, lora.dropout) == (64, 16, 0.05)
    assert lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (lora.vision_lora, lora.train_merger, lora.modules_to_save) == (False, False, [])
    assert (v.min_pixels, v.max_pixels) == (256 * 256, 256 * 256)
    assert (v.model, v.prompt, v.finetune) == ("Qwen/Qwen2.5-VL-7B-Instruct", DEFAULT_PROMPT, True)
    assert (v.epochs, v.max_steps, v.global_batch_size, v.lr) == (5, None, 16, 1e-4)
    assert (v.lr_schedule.name, v.lr_schedule.warmup_ratio) == ("cosine", 0.1)
    assert (v.gradient_checkpointing, v.max_length, v.keep_best, v.checkpoint_every) == (True, 1024, False, 50)
    g = v.generation
    assert (g.preset, g.max_new_tokens, g.batch_size, g.merge_adapter) == ("greedy", 256, 8, True)
    assert (g.temperature, g.top_p, g.top_k, g.repetition_penalty) == (None, None, None, None)


def test_bounds_refuse_what_cannot_work_and_accept_their_edges():
    for bad in (dict(dropout=1.0), dict(dropout=-0.1), dict(r=0), dict(alpha=0)):
        with pytest.raises(ValidationError):
            LoraConfig(**bad)
    assert LoraConfig(dropout=0.0).dropout == 0.0
    assert GenerationConfig(preset="authors", top_k=0).top_k == 0  # 0: no top-k cut
    for bad in (dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.01), dict(temperature=0.0)):
        with pytest.raises(ValidationError):
            GenerationConfig(preset="authors", **bad)
    assert VLMConfig(min_pixels=56 * 56, max_pixels=56 * 56).min_pixels == 56 * 56
    with pytest.raises(ValidationError, match=r"vlm.min_pixels=3137 is above vlm.max_pixels=3136"):
        VLMConfig(min_pixels=56 * 56 + 1, max_pixels=56 * 56)
    with pytest.raises(ValidationError):
        VLMConfig(min_pixels=27 * 28, max_pixels=56 * 56)
