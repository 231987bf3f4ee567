"""Mutation-audit gaps of core.reshard: the global batch counts micro batch, accumulation and processes; bf16 state is
partitioned even at ZeRO 0; a changed ZeRO stage (0 included) and a ZeRO-3 checkpoint of several parameter groups
are refused; an older checkpoint whose layout is only inferred is not refused; buffers come back from the
model-states file."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.core.reshard import Layout, ReshardError, check_compatible, read_layout, restore_buffers


def test_global_batch_and_partitioning():
    assert Layout(world_size=2, zero_stage=0, micro_batch=3, accumulation=4, precision="fp32").global_batch == 24
    assert Layout(1, 0, 1, 1, "bf16").partitioned  # bf16's optimizer keeps per-rank fp32 partitions
    assert not Layout(1, 0, 1, 1, "fp16").partitioned and Layout(1, 1, 1, 1, "fp32").partitioned


def test_refusals(tmp_path):
    same_batch = Layout(1, 0, 4, 2, "fp32")
    check_compatible(Layout(2, 0, 2, 2, "fp32"), same_batch, tmp_path)
    with pytest.raises(ReshardError, match=r"ZeRO stage 0, this run uses stage 1"):
        check_compatible(Layout(2, 0, 2, 2, "fp32"), Layout(1, 1, 4, 2, "fp32"), tmp_path)
    with pytest.raises(ReshardError, match="global batch 8, this run has 12"):
        check_compatible(Layout(2, 0, 2, 2, "fp32"), Layout(1, 0, 3, 4, "fp32"), tmp_path)
    with pytest.raises(ReshardError, match="ZeRO-3 on 2 processes with an optimizer of 2 parameter groups"):
        check_compatible(Layout(2, 3, 2, 2, "fp32"), Layout(1, 3, 4, 2, "fp32"), tmp_path, param_groups=2)
    check_compatible(Layout(2, 2, 2, 2, "fp32"), Layout(1, 2, 4, 2, "fp32"), tmp_path, param_groups=2)


def test_an_older_checkpoint_with_an_inferred_layout_is_not_refused(tmp_path):
    for r in range(2):
        (tmp_path / f"bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt").write_bytes(b"")
    inferred = read_layout(tmp_path)
    assert inferred.world_size == 2
    check_compatible(inferred, Layout(1, 2, 3, 5, "bf16"), tmp_path)  # stage and batch unknown: loaded as it is


def test_restore_buffers_copies_the_saved_running_statistics(tmp_path):
    saved = torch.nn.BatchNorm1d(3)
    saved.running_mean.fill_(0.5)
    saved.num_batches_tracked.fill_(7)
    torch.save({"module": saved.state_dict()}, tmp_path / "mp_rank_00_model_states.pt")
    fresh = torch.nn.BatchNorm1d(3)
    restored = restore_buffers(fresh, tmp_path)
    assert set(restored) == {"running_mean", "running_var", "num_batches_tracked"}
    assert torch.equal(fresh.running_mean, saved.running_mean) and int(fresh.num_batches_tracked) == 7
    with pytest.raises(ReshardError, match="no model-states file"):
        restore_buffers(fresh, tmp_path / "missing")
