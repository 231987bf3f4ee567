"""A VLM batch that does not divide over the ranks is refused naming the VLM's own keys: the remedy said "set
distributed.micro_batch_per_gpu" where `vlm.micro_batch_per_gpu` sets the fine-tune's micro batch (and wins)."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.recipes.vlm.batches import vlm_batch_plan
from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe


def test_an_indivisible_vlm_batch_names_the_vlm_keys():
    cfg = load_config("cpu-demo", ["vlm.global_batch_size=5", "vlm.micro_batch_per_gpu=null",
                                   "distributed.micro_batch_per_gpu=null"])
    with pytest.raises(ConfigError) as err:
        FinetuneVLMRecipe.check_config(cfg, 2)
    assert str(err.value).startswith("vlm.global_batch_size: global batch 5 is not divisible by world size 2")
    assert "set vlm.global_batch_size to 4 or 6, or run on 1 process " in str(err.value)
    assert "distributed." not in str(err.value)
    cfg = load_config("cpu-demo", ["vlm.global_batch_size=8", "vlm.micro_batch_per_gpu=3"])
    with pytest.raises(ConfigError, match=r"^vlm\.global_batch_size: .*set vlm\.micro_batch_per_gpu to 1, 2, 4"):
        FinetuneVLMRecipe.check_config(cfg, 2)


def test_the_vlm_micro_batch_wins_over_the_distributed_one():
    cfg = load_config("cpu-demo", ["vlm.global_batch_size=8", "vlm.micro_batch_per_gpu=2",
                                   "distributed.micro_batch_per_gpu=4"])
    plan = vlm_batch_plan(cfg, 2)
    assert (plan.micro_batch, plan.accumulation, plan.world_size) == (2, 2, 2)
    cfg = load_config("cpu-demo", ["vlm.global_batch_size=8", "vlm.micro_batch_per_gpu=null",
                                   "distributed.micro_batch_per_gpu=4"])
    assert vlm_batch_plan(cfg, 2).accumulation == 1
