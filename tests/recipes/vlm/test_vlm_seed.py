"""`run.seed` drives a VLM fine-tuning run's randomness: the LoRA initialisation, the order of the pairs
(`data_order.jsonl`) and the LoRA dropout masks. Every other VLM test runs with seed 0, so a recipe that ignored the
seed (a hard-coded 0 in the initial `seed_everything`, in `step_indices` or in `step_seed`) would pass them all.

Three in-process runs of the tiny Qwen2.5-VL (one process, ZeRO-0, 2 optimizer steps): seed 0, seed 1 and seed 1
again; the setup follows tests/recipes/vlm/test_vlm_resume.py.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest
import torch

from support.dropout import record_first_dropout_draw
from support.vlm import finetune_config, make_pairs


def _cfg(tmp: Path, name: str, seed: int):
    return finetune_config(tmp, name, "vlm.max_steps=2", "vlm.checkpoint_every=100", "vlm.eval_every=null",
                           f"run.seed={seed}")


def _seeded_run(tmp: Path, name: str, seed: int) -> Dict[str, Any]:
    """Run `name` with `run.seed=seed`: the LoRA weights right after `apply_lora` (the initialisation), the torch
    RNG state at the first training call of a LoRA dropout, the trained adapter and the pair keys per step."""
    from safetensors.torch import load_file

    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm import model as V
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    seen: Dict[str, Any] = {}
    apply_lora = V.apply_lora

    def spying_apply_lora(model, lora):
        model = apply_lora(model, lora)
        seen["init"] = {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}
        dropouts = [m for k, m in model.named_modules() if "lora_dropout" in k and isinstance(m, torch.nn.Dropout)]
        assert seen["init"] and dropouts, "no LoRA weights or LoRA dropout"
        record_first_dropout_draw(dropouts, seen)
        return model

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(V, "apply_lora", spying_apply_lora)
        result = run(FinetuneVLMRecipe, _cfg(tmp, name, seed))
    run_dir = Path(result["run_dir"])
    assert result["step"] == 2 and "rng" in seen
    order = [json.loads(line)["keys"] for line in (run_dir / "data_order.jsonl").read_text().splitlines()]
    return {**seen, "adapter": load_file(str(run_dir / "adapter/adapter_model.safetensors")), "order": order}


def _differing(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> list:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.slow
def test_run_seed_sets_lora_init_pair_order_and_dropout_and_repeats_bit_for_bit(tmp_path):
    """Without it a user fine-tuning with another seed (to see how much a description generator depends on its
    seed) could silently get seed 0's LoRA initialisation, pair order or dropout masks again, and a repeated seed
    might not reproduce its adapter. Seeds 0 and 1 differ in all of them; two seed-1 runs agree bit for bit."""
    make_pairs(tmp_path / "pairs", n=24)
    zero, one, again = (_seeded_run(tmp_path, name, seed) for name, seed in (("zero", 0), ("one", 1), ("again", 1)))

    # another seed: another LoRA initialisation, another pair order, other dropout masks, another adapter
    assert _differing(zero["init"], one["init"]), "seeds 0 and 1 start from the same LoRA weights"
    assert zero["order"] != one["order"], "seeds 0 and 1 train on the pairs in the same order"
    assert not torch.equal(zero["rng"], one["rng"]), "seeds 0 and 1 draw the same LoRA dropout masks"
    assert _differing(zero["adapter"], one["adapter"])
    # the same seed: the same run, bit for bit
    assert _differing(one["init"], again["init"]) == []
    assert one["order"] == again["order"]
    assert torch.equal(one["rng"], again["rng"])
    assert _differing(one["adapter"], again["adapter"]) == []
