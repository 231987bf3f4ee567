"""A job script that sets WORLD_SIZE but forgets another launcher variable (`WORLD_SIZE=$SLURM_NTASKS` without
`RANK`, `LOCAL_RANK`, or `MASTER_ADDR` / `MASTER_PORT`) is refused naming the missing variable: every process ran as
rank 0 (several rank 0s writing one run folder), every rank of a node took GPU 0, or DeepSpeed, not finding the
env:// variables, fell back to MPI discovery and failed "No module named 'mpi4py'"."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.core import distributed as D
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.sections import DistributedConfig

VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def launched(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("missing", ["RANK", "LOCAL_RANK"])
def test_a_launched_world_without_its_rank_is_refused_naming_it(launched, missing):
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        if name != missing:
            launched.setenv(name, value)
    with pytest.raises(UserError, match=f"WORLD_SIZE=2 but {missing} is not set"):
        D.DistEnv.from_environment(torch.device("cpu"))


def test_a_single_process_needs_no_rank_variables(launched):
    launched.setenv("LOCAL_RANK", "0")
    assert D.DistEnv.from_environment(torch.device("cpu")).world_size == 1
    launched.setenv("WORLD_SIZE", "1")
    assert D.DistEnv.from_environment(torch.device("cpu")).rank == 0


@pytest.mark.parametrize("missing", ["MASTER_ADDR", "MASTER_PORT"])
def test_a_rendezvous_without_its_address_is_refused_before_it_starts(launched, missing):
    made = []
    launched.setattr(D.dist, "is_initialized", lambda: False)
    launched.setattr(D.dist, "init_process_group", lambda **kw: made.append(kw))
    import deepspeed

    launched.setattr(deepspeed, "init_distributed", lambda **kw: made.append(kw))
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29511"}.items():
        if name != missing:
            launched.setenv(name, value)
    env = D.DistEnv.from_environment(torch.device("cpu"))
    with pytest.raises(UserError, match=f"{missing} is not set"):
        D.init_process_group(env, DistributedConfig())
    assert made == []
    launched.setenv(missing, "29511" if missing == "MASTER_PORT" else "127.0.0.1")
    D.init_process_group(env, DistributedConfig())
    assert len(made) == 1


def test_a_rank_without_a_world_size_says_it_is_unset(launched):
    """`RANK=$SLURM_PROCID` alone: the refusal said "RANK=1 is not below WORLD_SIZE=1", a WORLD_SIZE nobody set."""
    launched.setenv("RANK", "1")
    with pytest.raises(UserError, match="RANK=1 but WORLD_SIZE is not set"):
        D.DistEnv.from_environment(torch.device("cpu"))
