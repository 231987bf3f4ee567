"""Mutation audit of the memory estimate's parameter counts (recipes/vlm/memory.py): `count_params` and `lora_params`
are exact counts of the Qwen2.5-VL that transformers builds from the same dimensions (on the meta device: no weights),
for the 7B and for another shape, not only close to the published 8.29B (a dropped norm is 0.002% of it)."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.recipes.vlm.memory import LM_TARGETS, QwenVLDims, count_params, lora_params

SMALL = QwenVLDims(vocab=1000, hidden=96, intermediate=200, layers=3, heads=6, kv_heads=2, vision_depth=2,
                   vision_hidden=48, vision_intermediate=80, vision_out=96)


def _skeleton(d: QwenVLDims):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = dict(vocab_size=d.vocab, hidden_size=d.hidden, intermediate_size=d.intermediate,
                num_hidden_layers=d.layers, num_attention_heads=d.heads, num_key_value_heads=d.kv_heads,
                tie_word_embeddings=False)
    vision = dict(depth=d.vision_depth, hidden_size=d.vision_hidden, intermediate_size=d.vision_intermediate,
                  out_hidden_size=d.vision_out, patch_size=d.patch, spatial_merge_size=d.merge,
                  temporal_patch_size=d.temporal_patch, num_heads=4)
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False)
    with torch.device("meta"):
        return Qwen2_5_VLForConditionalGeneration._from_config(config)


@pytest.mark.parametrize("d", [QwenVLDims(), SMALL], ids=["7b", "small"])
def test_parameter_counts_are_those_of_the_model_transformers_builds(d):
    model = _skeleton(d)
    named = dict(model.named_parameters())
    vision = sum(p.numel() for n, p in named.items() if ".visual." in f".{n}")
    total = sum(p.numel() for p in named.values())
    assert count_params(d) == {"language_model": total - vision, "vision": vision, "total": total}
    for r in (1, 64):
        adapted = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".visual." not in f".{n}"
                   and n.rsplit(".", 1)[-1] in LM_TARGETS]
        assert len(adapted) == d.layers * len(LM_TARGETS)
        assert lora_params(d, r) == sum(r * (m.in_features + m.out_features) for m in adapted)
    assert lora_params(d, 8, targets=("q_proj", "v_proj")) == d.layers * 8 * (2 * d.hidden + d.hidden + d.kv_heads
                                                                              * d.head_dim)
