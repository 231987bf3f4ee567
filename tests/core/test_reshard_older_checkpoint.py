"""A checkpoint saved before layouts were recorded (no layout.json) with per-rank optimizer partitions
(`*zero_pp_rank_<r>_..._optim_states.pt`, written by ZeRO 1-3 and by bf16's optimizer) resumed on another number of
processes: its layout was inferred from those files, but as stage "unknown" it counted as not partitioned, so it was
handed to DeepSpeed as it is, whose ZeRO load picks the partition file of its own rank (on 1 process: rank 0's half
of a 2-rank optimizer state; on 2 from 1: no file for rank 1). Partition files are partitioned state: such a
checkpoint is now converted to the universal checkpoint, as one with a recorded layout."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mmlnb_dist.core import checkpoint as C
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.reshard import Layout, read_layout


def _engine(world: int):
    return SimpleNamespace(dp_world_size=world, zero_optimization_stage=lambda: 1,
                           train_micro_batch_size_per_gpu=lambda: 2, gradient_accumulation_steps=lambda: 1,
                           bfloat16_enabled=lambda: False, fp16_enabled=lambda: False,
                           optimizer=SimpleNamespace(param_groups=[{}]))


@pytest.mark.parametrize("saved, now", [(2, 1), (1, 2), (2, 3)])
def test_an_older_partitioned_checkpoint_on_another_world_size_is_converted(tmp_path, monkeypatch, saved, now):
    tag = tmp_path / "global_step4"
    tag.mkdir()
    for r in range(saved):
        (tag / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt").write_bytes(b"")
    assert read_layout(tag).partitioned and read_layout(tag).world_size == saved
    converted = []
    monkeypatch.setattr(C, "convert_to_universal", lambda d, t, env: converted.append(t) or t + "-universal")
    manager = C.CheckpointManager(tmp_path, DistEnv(rank=0, world_size=now))
    assert manager._tag_for_this_world(_engine(now), "global_step4") == "global_step4-universal"
    assert converted == ["global_step4"]


def test_an_unpartitioned_checkpoint_still_loads_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "convert_to_universal", lambda *a: pytest.fail("ZeRO-0 fp32 state needs no conversion"))
    tag = tmp_path / "global_step4"
    tag.mkdir()
    C.write_layout(tag, Layout(world_size=2, zero_stage=0, micro_batch=1, accumulation=1, precision="fp32"))
    manager = C.CheckpointManager(tmp_path, DistEnv(rank=0, world_size=1))
    engine = _engine(1)
    engine.zero_optimization_stage = lambda: 0
    engine.train_micro_batch_size_per_gpu = lambda: 2
    assert manager._tag_for_this_world(engine, "global_step4") == "global_step4"
