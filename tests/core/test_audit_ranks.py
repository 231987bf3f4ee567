"""Where a process stands under a launcher, found unguarded by a mutation audit of `core/distributed.py`:
torchrun, the deepspeed launcher and Ray Train set RANK / WORLD_SIZE / LOCAL_RANK, and every rank's role (which
one writes, which GPU it takes, how the global batch splits) is read from them. Tested through the environment
(monkeypatch), not through real process groups."""
from __future__ import annotations

import pytest
import torch

from mmlnb_dist.core import distributed as D
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.core.sections import DistributedConfig


@pytest.fixture
def launcher(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_plain_process_is_rank_0_of_1(launcher):
    env = D.DistEnv.from_environment(torch.device("cpu"))
    assert (env.rank, env.world_size, env.local_rank) == (0, 1, 0)
    assert env.is_main and not env.is_distributed


def test_a_launched_rank_reads_its_global_rank_world_size_and_local_rank(launcher):
    """Rank 5 of 8 on the second node of two: local rank 1. The main process is global rank 0 only: the first
    rank of the second node (local rank 0) must not write the run folder too."""
    launcher.setenv("RANK", "5")
    launcher.setenv("WORLD_SIZE", "8")
    launcher.setenv("LOCAL_RANK", "1")
    env = D.DistEnv.from_environment(torch.device("cpu"))
    assert (env.rank, env.world_size, env.local_rank) == (5, 8, 1)
    assert env.is_distributed and not env.is_main
    assert not D.DistEnv(rank=4, world_size=8, local_rank=0).is_main
    assert D.DistEnv(rank=0, world_size=8, local_rank=0).is_main
    assert not D.DistEnv(world_size=1).is_distributed and D.DistEnv(world_size=2).is_distributed


def test_each_rank_takes_the_gpu_of_its_local_rank(launcher):
    """Global rank 14 with local rank 5 on a node of 4 visible GPUs takes cuda:1 (local rank modulo the GPUs),
    not cuda:(14 % 4)."""
    launcher.setenv("RANK", "14")
    launcher.setenv("WORLD_SIZE", "16")
    launcher.setenv("LOCAL_RANK", "5")
    launcher.setattr(torch.cuda, "is_available", lambda: True)
    launcher.setattr(torch.cuda, "device_count", lambda: 4)
    assert D.DistEnv.from_environment().device == torch.device("cuda", 1)
    launcher.setattr(torch.cuda, "is_available", lambda: False)
    assert D.DistEnv.from_environment().device == torch.device("cpu")


def test_the_backend_follows_the_device_unless_set():
    assert D.resolve_backend(DistributedConfig(), torch.device("cuda", 0)) == "nccl"
    assert D.resolve_backend(DistributedConfig(), torch.device("cpu")) == "gloo"
    assert D.resolve_backend(DistributedConfig(backend="gloo"), torch.device("cuda", 0)) == "gloo"


def test_a_single_process_or_an_existing_group_creates_no_group(monkeypatch):
    """One process makes no process group (a recipe's engine gets its own 1-rank group); a group that DeepSpeed
    or Ray Train made already is reused, not made twice (torch refuses a second default group)."""
    made = []
    monkeypatch.setattr(D.dist, "init_process_group", lambda **kw: made.append(kw))
    import deepspeed

    monkeypatch.setattr(deepspeed, "init_distributed", lambda **kw: made.append(kw))
    monkeypatch.setattr(D.dist, "is_initialized", lambda: False)
    D.init_process_group(D.DistEnv(), DistributedConfig())
    assert made == []
    monkeypatch.setattr(D.dist, "is_initialized", lambda: True)
    D.init_process_group(D.DistEnv(rank=1, world_size=2), DistributedConfig())
    D.init_engine_process_group(D.DistEnv(), DistributedConfig())
    assert made == []


def test_a_single_process_engine_group_sets_the_local_rank_deepspeed_reads(monkeypatch):
    made = []
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(D.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(D.dist, "init_process_group", lambda **kw: made.append(kw))
    import deepspeed

    monkeypatch.setattr(deepspeed, "init_distributed", lambda **kw: made.append(kw))
    D.init_engine_process_group(D.DistEnv(), DistributedConfig())
    assert D.os.environ["LOCAL_RANK"] == "0"
    assert (made[0]["rank"], made[0]["world_size"], made[0]["backend"]) == (0, 1, "gloo")


def test_collectives_on_one_process_are_the_identity(monkeypatch):
    """Nothing of torch.distributed is called for one process, not even with the 1-rank group its engine made."""
    def no_collective(*args, **kwargs):
        raise AssertionError("a collective on a single process")

    monkeypatch.setattr(D.dist, "is_initialized", lambda: True)

    for name in ("all_gather_object", "all_reduce", "barrier", "new_group"):
        monkeypatch.setattr(D.dist, name, no_collective)
    env = D.DistEnv()
    assert D.all_gather_object(env, {"a": 1}) == [{"a": 1}]
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(D.all_reduce_sum(env, t), torch.tensor([1.0, 2.0]))
    logits, labels = torch.randn(3, 2), torch.tensor([0, 1, 1])
    out = D.gather_tensors(env, [logits, labels])
    assert len(out) == 2 and torch.equal(out[0], logits) and torch.equal(out[1], labels)
    D.barrier(env)
    with D.rank0_alone(env):
        pass


def test_gathered_tensors_are_concatenated_in_rank_order(monkeypatch):
    """Uneven per-rank lengths (the last rank's short share) are fine; rank 0's rows come first."""
    def all_gather(out, obj):
        out[0] = obj
        out[1] = (torch.tensor([[9.0]]), torch.tensor([7]))

    monkeypatch.setattr(D.dist, "all_gather_object", all_gather)
    env = D.DistEnv(rank=0, world_size=2)
    preds, labels = D.gather_tensors(env, [torch.tensor([[1.0], [2.0]]), torch.tensor([3, 4])])
    assert torch.equal(preds, torch.tensor([[1.0], [2.0], [9.0]])) and torch.equal(labels, torch.tensor([3, 4, 7]))


def test_rank0_alone_waits_in_its_own_group_with_the_wait_asked_for(monkeypatch):
    calls = []
    monkeypatch.setattr(D.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(D.dist, "new_group", lambda **kw: calls.append(("new", kw)) or "group")
    monkeypatch.setattr(D.dist, "barrier", lambda group=None: calls.append(("barrier", group)))
    monkeypatch.setattr(D.dist, "destroy_process_group", lambda group=None: calls.append(("destroy", group)))
    env = D.DistEnv(rank=1, world_size=2)
    with D.rank0_alone(env, wait_s=90):
        calls.append(("work", None))
    assert [c[0] for c in calls] == ["new", "work", "barrier", "destroy"]
    assert calls[0][1]["timeout"].total_seconds() == 90 and calls[0][1]["backend"] == "gloo"
    assert calls[2][1] == "group" and calls[3][1] == "group"
    calls.clear()
    with D.rank0_alone(env):
        pass
    assert calls[0][1]["timeout"].total_seconds() == DistributedConfig().rank0_wait_s


@pytest.mark.parametrize("global_batch, world, micro, expected", [
    (32, 4, None, (8, 1)),   # no micro batch: the global batch split over the ranks, no accumulation
    (32, 2, 4, (4, 4)),      # 4 per rank x 2 ranks = 8 per step: 4 accumulation steps
    (12, 1, 3, (3, 4)),
])
def test_the_batch_plan_multiplies_back_to_the_global_batch(global_batch, world, micro, expected):
    plan = D.plan_batch(global_batch, world, micro)
    assert (plan.micro_batch, plan.accumulation) == expected
    assert plan.micro_batch * plan.accumulation * plan.world_size == plan.global_batch == global_batch


def test_an_indivisible_batch_is_a_config_error_naming_the_key_and_the_remedy():
    with pytest.raises(ConfigError, match=r"train.global_batch_size: global batch 30 is not divisible by world "
                                          r"size 4 .*: set train.global_batch_size to 28 or 32"):
        D.plan_batch(30, 4, None)
    with pytest.raises(ConfigError, match=r"vlm.batch: .* micro batch 3 x world size 4 = 12"):
        D.plan_batch(32, 4, 3, key="vlm.batch")
    with pytest.raises(ConfigError, match="micro batch 16 x world size 4 = 64"):
        D.plan_batch(32, 4, 16)  # a micro batch larger than a rank's share is refused, not run as 0 steps


def test_an_engine_on_a_group_an_earlier_run_made_still_gets_the_local_rank(monkeypatch):
    """A reused Ray trial process drops the launcher variables (LOCAL_RANK too) before each trial, but the 1-rank
    group of its first trial lives on: the next trial's DeepSpeed engine asserted "DeepSpeed requires the LOCAL_RANK
    environment variable" (a study's trials, which did not put it back as search trials did)."""
    made = []
    monkeypatch.setenv("LOCAL_RANK", "0")
    D.forget_launcher()
    assert "LOCAL_RANK" not in D.os.environ
    monkeypatch.setattr(D.dist, "is_initialized", lambda: True)  # the first trial's group
    monkeypatch.setattr(D.dist, "init_process_group", lambda **kw: made.append(kw))
    D.init_engine_process_group(D.DistEnv(), DistributedConfig())
    assert D.os.environ["LOCAL_RANK"] == "0" and made == []  # no second group
