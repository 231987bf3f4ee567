"""`vlm.lora.target_modules: [all-linear]` is peft's (and LLaMA-Factory's, ms-swift's) shorthand for every linear
layer of the language model but its output head. The name check refused it ("match(es) no linear layer"); it now
selects exactly those layers (the vision tower only with `vlm.lora.vision_lora`), peft builds the adapter on them, and
`all-linear` mixed with names is refused (which of the two the user meant cannot be told)."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes.vlm import model as V
from mmlnb_dist.recipes.vlm.config import LoraConfig
from mmlnb_dist.recipes.vlm.lora_names import check_lora_names, model_skeleton


@pytest.fixture(scope="module")
def skeleton(cache):
    return model_skeleton(V.resolve_model_path("tiny", cache_dir=cache))


def _language_linears(model):
    return sorted(n for n, m in model.named_modules()
                  if isinstance(m, torch.nn.Linear) and V.VISION_PREFIX not in n and not n.endswith("lm_head"))


def test_all_linear_adapts_every_linear_layer_of_the_language_model_but_the_head(skeleton):
    names = V.lora_target_modules(skeleton, LoraConfig(target_modules=["all-linear"]))
    assert sorted(names) == _language_linears(skeleton)
    assert any(n.endswith("mlp.down_proj") for n in names) and not any(n.endswith("lm_head") for n in names)


def test_all_linear_with_vision_lora_adds_the_tower_s_blocks(skeleton):
    names = V.lora_target_modules(skeleton, LoraConfig(target_modules=["all-linear"], vision_lora=True))
    tower = [n for n in names if V.VISION_PREFIX in n]
    assert tower and sorted(set(names) - set(tower)) == _language_linears(skeleton)


def test_all_linear_mixed_with_names_is_refused(skeleton):
    with pytest.raises(ConfigError, match=r"vlm.lora.target_modules: all-linear .*alone"):
        check_lora_names(skeleton, LoraConfig(target_modules=["all-linear", "q_proj"]))


def test_peft_builds_the_adapter_on_every_language_linear_layer(cache):
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(V.resolve_model_path("tiny", cache_dir=cache))
    expected = _language_linears(model)  # (before peft wraps the layers in place)
    peft_model = V.apply_lora(model, LoraConfig(r=2, alpha=4, target_modules=["all-linear"]))
    adapted = sorted(n.removeprefix("base_model.model.") for n, m in peft_model.named_modules()
                     if isinstance(getattr(m, "lora_A", None), torch.nn.ModuleDict) and len(m.lora_A))
    assert adapted == expected
