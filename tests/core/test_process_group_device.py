"""A GPU rank's process group is bound to that rank's GPU.

On the H200 machine the pipeline printed torch's "Guessing device ID based on global rank. This can cause a hang if
rank to GPU mapping is heterogeneous" and "barrier(): using the device under current context": without `device_id`
NCCL picks the GPU of a barrier from the global rank, which is the wrong GPU (and a hang) where the ranks of a node
do not map to its GPUs in order (a partial CUDA_VISIBLE_DEVICES, Slurm placing ranks round-robin). This machine has no
GPU, so torch's group creation is recorded rather than run; the GPU run is in BENCHMARKS.md."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.core import distributed as D
from mmlnb_dist.core.sections import DistributedConfig


@pytest.fixture
def recorded(monkeypatch):
    calls = {"init": [], "set_device": [], "deepspeed": []}
    monkeypatch.setattr(D.dist, "is_initialized", lambda: bool(calls["init"]))
    monkeypatch.setattr(D.dist, "init_process_group", lambda **kw: calls["init"].append(kw))
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls["set_device"].append(device))
    import deepspeed

    monkeypatch.setattr(deepspeed, "init_distributed", lambda **kw: calls["deepspeed"].append(kw))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # what a launcher sets beside RANK and WORLD_SIZE
    monkeypatch.setenv("MASTER_PORT", "29500")
    return calls


def test_a_rank_of_a_launched_job_binds_its_group_to_its_own_gpu(recorded):
    gpu = torch.device("cuda", 3)
    env = D.DistEnv(rank=9, world_size=16, local_rank=3, device=gpu)
    D.init_process_group(env, DistributedConfig())
    assert recorded["set_device"] == [gpu]
    assert [c["device_id"] for c in recorded["init"]] == [gpu]
    assert recorded["init"][0]["backend"] == "nccl"
    assert len(recorded["deepspeed"]) == 1  # DeepSpeed then adopts the group that exists


def test_a_single_gpu_process_binds_its_one_rank_group_to_its_gpu(recorded):
    gpu = torch.device("cuda", 0)
    D.init_engine_process_group(D.DistEnv(device=gpu), DistributedConfig())
    assert recorded["set_device"] == [gpu]
    assert [c["device_id"] for c in recorded["init"]] == [gpu]
    assert recorded["init"][0]["world_size"] == 1


def test_a_cpu_rank_binds_no_device(recorded):
    D.init_engine_process_group(D.DistEnv(), DistributedConfig())
    assert recorded["set_device"] == [] and [c.get("device_id") for c in recorded["init"]] == [None]
