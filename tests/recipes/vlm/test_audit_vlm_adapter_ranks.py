"""Mutation audit of `adapter.save_adapter` on a rank other than 0: it holds no copy (`trainable_state_dict` gives
it {}), so it must write nothing and not take its empty copy for an empty adapter (refusing would fail every
multi-GPU save), and it must still join the barrier that rank 0's write ends with."""
from __future__ import annotations

import types

import torch

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.recipes.vlm import adapter as A


class _Peft(torch.nn.Module):
    """Stands in for a peft model; only rank 0 may write."""

    def __init__(self):
        super().__init__()
        self.lora = torch.nn.Linear(2, 2)
        self.peft_config = {"default": types.SimpleNamespace(base_model_name_or_path="base")}

    def save_pretrained(self, *args, **kwargs):
        raise AssertionError("a rank other than 0 wrote the adapter")


def test_another_rank_writes_nothing_refuses_nothing_and_joins_the_barrier(tmp_path, monkeypatch):
    met = []
    monkeypatch.setattr(A, "barrier", lambda env: met.append(env.rank))
    model = _Peft()
    A.save_adapter(model, tmp_path / "adapter", DistEnv(rank=1, world_size=2), base_path="/models/base")
    assert met == [1]
    assert not (tmp_path / "adapter").exists()
    assert model.peft_config["default"].base_model_name_or_path == "base"
