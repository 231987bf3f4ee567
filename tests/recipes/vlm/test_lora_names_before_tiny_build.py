"""A misspelt `vlm.lora.target_modules` entry for `tiny` was refused only after the tiny model was built (its
weights trained and written: seconds to minutes of CPU on first use), and the message listed the names there are
without pointing at the one meant. The names are now checked on the architecture before anything is built, and
the message says which name was likely meant."""
from __future__ import annotations

import pytest

from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes.vlm.config import LoraConfig, VLMConfig
from mmlnb_dist.recipes.vlm.preflight import check_finetune_model

PIX = 56 * 56


def test_a_misspelt_target_for_tiny_is_refused_before_the_model_is_built_with_a_suggestion(tmp_path):
    cache = tmp_path / "cache"
    vcfg = VLMConfig(model="tiny", prompt="Describe.", min_pixels=PIX, max_pixels=PIX, cache_dir=cache,
                     lora=LoraConfig(target_modules=["q_proj", "v_prj"]))
    with pytest.raises(ConfigError, match=r"vlm.lora.target_modules: v_prj match.*did you mean v_proj"):
        check_finetune_model(vcfg)
    assert not cache.exists() or not any(cache.rglob("*.safetensors")), "the tiny model was built first"


def test_a_misspelt_module_to_save_is_refused_with_a_suggestion(tmp_path):
    vcfg = VLMConfig(model="tiny", prompt="Describe.", min_pixels=PIX, max_pixels=PIX, cache_dir=tmp_path / "cache",
                     lora=LoraConfig(modules_to_save=["lm_haed"]))
    with pytest.raises(ConfigError, match=r"modules_to_save: lm_haed match.*did you mean lm_head \(for lm_haed\)"):
        check_finetune_model(vcfg)
