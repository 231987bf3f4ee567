"""`vlm.lora.target_modules: []` adapted no layer at all: `check_lora_names` only looked for entries matching
nothing, so the empty list passed `finetune-vlm`'s check, the run folder was made, and peft refused in setup
(NoMatchingPeftModuleError: "No `target_modules` passed"). It is now refused by the check, before the folder,
naming the layers there are; with `vlm.lora.vision_lora` the vision tower's blocks are targets, so the empty list
adapts the tower alone and passes."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes.vlm import model as V
from mmlnb_dist.recipes.vlm.config import LoraConfig, VLMConfig
from mmlnb_dist.recipes.vlm.lora_names import check_lora_names, model_skeleton

PIX = 56 * 56


@pytest.fixture(scope="module")
def skeleton(cache):
    return model_skeleton(V.resolve_model_path("tiny", cache_dir=cache))


@pytest.mark.parametrize("modules_to_save", [[], ["lm_head"]])
def test_an_empty_target_list_without_the_vision_tower_is_refused_naming_the_layers(skeleton, modules_to_save):
    with pytest.raises(ConfigError, match=r"vlm.lora.target_modules is empty.*available: down_proj, gate_proj"):
        check_lora_names(skeleton, LoraConfig(target_modules=[], modules_to_save=modules_to_save))


def test_an_empty_target_list_with_the_vision_tower_adapts_the_tower_alone(skeleton):
    names = V.lora_target_modules(skeleton, LoraConfig(target_modules=[], vision_lora=True))
    assert names and all(V.VISION_PREFIX in n for n in names)


def test_finetune_s_model_check_refuses_the_empty_list(cache):
    from mmlnb_dist.recipes.vlm.preflight import check_finetune_model

    with pytest.raises(ConfigError, match="vlm.lora.target_modules is empty"):
        check_finetune_model(VLMConfig(model="tiny", prompt="Describe.", min_pixels=PIX, max_pixels=PIX,
                                       cache_dir=cache, lora=LoraConfig(target_modules=[])))
