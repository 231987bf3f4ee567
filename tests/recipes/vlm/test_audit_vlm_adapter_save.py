"""Mutation audit of the adapter save (recipes/vlm/adapter.py) without DeepSpeed: a ZeRO-3 status says when a
parameter is partitioned, the copy is a snapshot (training goes on after a save), only trainable tensors are copied
and only on rank 0, another rank writes nothing, refuses nothing (its copy is empty) and joins rank 0's barrier, and
an adapter with an empty tensor or no tensor at all is refused before anything is written."""
from __future__ import annotations

import types

import pytest
import torch

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.recipes.vlm.adapter import (PartitionedParameterError, copy_trainable, is_partitioned, save_adapter,
                                            trainable_state_dict)


def _status(name):
    return types.SimpleNamespace(name=name)


def test_zero3_status_decides_whether_a_parameter_is_partitioned():
    """NOT_AVAILABLE is partitioned whatever the local tensor looks like; AVAILABLE (gathered) and a plain tensor
    are not, an empty plain tensor included."""
    gathered = torch.nn.Parameter(torch.ones(3))
    gathered.ds_status = _status("AVAILABLE")
    gathered.ds_numel = 3
    released = torch.nn.Parameter(torch.ones(1))
    released.ds_status = _status("NOT_AVAILABLE")
    assert is_partitioned(released)
    assert not is_partitioned(gathered)
    assert not is_partitioned(torch.nn.Parameter(torch.empty(0)))
    with pytest.raises(PartitionedParameterError, match=r"1 of 2 trainable parameters .*first: b"):
        copy_trainable([("a", gathered), ("b", released)])


def test_the_copy_is_a_snapshot_of_the_trainable_tensors_on_rank_0_only():
    """A step taken after the save does not reach the saved tensors; frozen parameters are not copied; another rank
    gets nothing (rank 0 writes)."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    model[0].requires_grad_(False)
    state = trainable_state_dict(model, DistEnv())
    assert sorted(state) == ["1.bias", "1.weight"]
    before = {k: v.clone() for k, v in state.items()}
    with torch.no_grad():
        model[1].weight.add_(1.0)
    assert all(torch.equal(state[k], before[k]) for k in state)
    assert trainable_state_dict(model, DistEnv(rank=1, world_size=2)) == {}


class _Peft(torch.nn.Module):
    """Stands in for a peft model; save_pretrained must never be reached (an empty adapter, or a rank other than 0)."""

    def __init__(self):
        super().__init__()
        self.lora = torch.nn.Linear(2, 2)
        self.peft_config = {"default": types.SimpleNamespace(base_model_name_or_path="base")}

    def save_pretrained(self, *args, **kwargs):
        raise AssertionError("the adapter was written")


@pytest.mark.parametrize("state", [{}, {"base_model.model.lora_A.weight": torch.empty(0, 4)}], ids=["none", "empty"])
def test_an_adapter_without_data_is_refused_and_nothing_is_written(state, tmp_path, monkeypatch):
    import peft

    from mmlnb_dist.recipes.vlm import adapter as A

    monkeypatch.setattr(A, "trainable_state_dict", lambda model, env: dict(state))
    monkeypatch.setattr(peft, "get_peft_model_state_dict", lambda model, state_dict: dict(state_dict))
    with pytest.raises(PartitionedParameterError, match="refusing to save an empty LoRA adapter"):
        save_adapter(_Peft(), tmp_path / "adapter", DistEnv())
    assert not (tmp_path / "adapter").exists()


def test_another_rank_writes_nothing_refuses_nothing_and_joins_the_barrier(tmp_path, monkeypatch):
    from mmlnb_dist.recipes.vlm import adapter as A

    met = []
    monkeypatch.setattr(A, "barrier", lambda env: met.append(env.rank))
    model = _Peft()
    A.save_adapter(model, tmp_path / "adapter", DistEnv(rank=1, world_size=2), base_path="/models/base")
    assert met == [1]
    assert not (tmp_path / "adapter").exists()
    assert model.peft_config["default"].base_model_name_or_path == "base"
