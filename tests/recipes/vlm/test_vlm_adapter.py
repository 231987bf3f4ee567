"""Saving the adapter refuses a ZeRO-3 parameter that was not gathered, instead of writing an empty tensor.

The real case runs one process under ZeRO-3 with `stage3_param_persistence_threshold` 0 (every tensor of the tiny
model is partitioned, even alone: the rank keeps an empty placeholder and its shard in `ds_tensor`); the 2-process
run and the comparison with the consolidated checkpoint are in test_vlm_distributed.py."""
from __future__ import annotations

import json

import pytest
import torch

from support.vlm import ROOT, make_pairs

PIX = 56 * 56


def test_copy_refuses_a_parameter_that_is_only_a_placeholder():
    """The refusal, without DeepSpeed: a parameter shaped like a ZeRO-3 placeholder (no data, a full size)."""
    from mmlnb_dist.recipes.vlm.adapter import PartitionedParameterError, copy_trainable

    whole = torch.nn.Parameter(torch.ones(2, 3))
    placeholder = torch.nn.Parameter(torch.empty(0))
    placeholder.ds_numel = 6
    assert copy_trainable([("a", whole)])["a"].tolist() == [[1.0] * 3] * 2
    with pytest.raises(PartitionedParameterError, match="b.*GatheredParameters"):
        copy_trainable([("a", whole), ("b", placeholder)])


@pytest.fixture(scope="module")
def zero3(tmp_path_factory):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.distributed import DistEnv, init_engine_process_group
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    tmp = tmp_path_factory.mktemp("vlm_adapter_z3")
    make_pairs(tmp / "pairs", n=24)
    (tmp / "zero3.json").write_text(json.dumps({"zero_optimization": {
        "stage": 3, "stage3_param_persistence_threshold": 0, "stage3_gather_16bit_weights_on_model_save": True}}))
    cfg = load_config(ROOT / "launch/profiles/cpu-demo.yaml", [
        f"vlm.pairs={tmp / 'pairs'}", f"run.output_dir={tmp / 'runs'}", "run.name=z3", f"vlm.cache_dir={tmp / 'cache'}",
        "vlm.tiny_vision=random",
        f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}", "tracking.backends=[stdout]", "vlm.global_batch_size=4",
        "vlm.max_steps=2", "vlm.val_max_samples=2", "vlm.lr=1e-2", "distributed.zero_stage=3",
        f"distributed.deepspeed_config={tmp / 'zero3.json'}",
    ])
    env = DistEnv.from_environment()
    init_engine_process_group(env, cfg.distributed)
    recipe = FinetuneVLMRecipe(cfg, env)
    recipe.setup()
    result = recipe.train()
    recipe.cleanup()
    return recipe, result


@pytest.mark.slow
def test_zero3_adapter_is_gathered_and_an_ungathered_copy_is_refused(zero3):
    from safetensors.torch import load_file

    from mmlnb_dist.recipes.vlm.adapter import PartitionedParameterError, copy_trainable, is_partitioned

    recipe, result = zero3
    named = [(n, p) for n, p in recipe.model.named_parameters() if p.requires_grad]
    assert named and all(is_partitioned(p) and p.numel() == 0 for _, p in named)  # threshold 0 took effect
    with pytest.raises(PartitionedParameterError):
        copy_trainable(named)
    saved = load_file(f"{result['adapter_dir']}/adapter_model.safetensors")
    assert saved and all(t.numel() > 0 for t in saved.values())
    sizes = {n: p.ds_numel for n, p in named}
    assert sum(t.numel() for t in saved.values()) == sum(sizes.values())
