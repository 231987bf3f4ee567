"""Mutation-audit gaps of core.engine and core.distributed: the generated DeepSpeed config carries offload, ZeRO-3
saving, fp16 and clipping as configured; the optimizer is the configured one with its weight decay and only the
trainable parameters; `Engine.lr()` is the largest group rate; batch planning (micro x accumulation x world =
global) refuses what does not divide, naming the key; the launcher's variables and an explicit backend are read."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from mmlnb_dist.core.distributed import (DistEnv, init_engine_process_group, plan_batch, resolve_backend)
from mmlnb_dist.core.engine import (OptimizerSpec, build_engine, build_optimizer, check_precision, deepspeed_config,
                                    precision_of, seed_everything)
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.core.sections import DistributedConfig, LRScheduleConfig

PLAN = plan_batch(8, 2, 2)


def test_offload_and_zero3_saving_follow_the_config():
    ds = deepspeed_config(DistributedConfig(zero_stage=2, offload_optimizer=True), PLAN, on_cpu=True)
    assert ds["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": False}
    ds = deepspeed_config(DistributedConfig(zero_stage=3, offload_optimizer=True, offload_params=True), PLAN)
    zero = ds["zero_optimization"]
    assert zero["offload_optimizer"]["device"] == "cpu" and zero["offload_param"] == {"device": "cpu",
                                                                                    "pin_memory": True}
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True  # else a ZeRO-3 save holds no whole weights
    assert "offload_optimizer" not in deepspeed_config(DistributedConfig(zero_stage=1, offload_optimizer=True),
                                                       PLAN)["zero_optimization"]


def test_precision_and_clipping_sections():
    fp16 = deepspeed_config(DistributedConfig(precision="fp16", gradient_clipping=0.5), PLAN)
    assert fp16["fp16"]["enabled"] is True and fp16["fp16"]["loss_scale"] == 0  # dynamic loss scaling
    assert fp16["gradient_clipping"] == 0.5 and "bf16" not in fp16
    plain = deepspeed_config(DistributedConfig(precision="fp32", gradient_clipping=0.0), PLAN)
    assert "gradient_clipping" not in plain and "fp16" not in plain and "bf16" not in plain


def test_precision_of_a_user_json_and_the_cpu_refusal_of_its_fp16(tmp_path):
    assert precision_of({"bf16": {"enabled": True}}) == "bf16"
    assert precision_of({"fp16": {"enabled": True}}) == "fp16"
    assert precision_of({"bf16": {"enabled": False}}) == "fp32"
    for section, refused in (("bf16", False), ("fp16", True)):
        path = tmp_path / f"{section}.json"
        path.write_text(json.dumps({section: {"enabled": True}}))
        dist = DistributedConfig(deepspeed_config=str(path))
        if refused:
            with pytest.raises(ConfigError, match="distributed.deepspeed_config: fp16 needs a GPU"):
                check_precision(dist, torch.device("cpu"))
        else:
            check_precision(dist, torch.device("cpu"))


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_the_configured_optimizer_with_its_weight_decay(name, cls):
    opt = build_optimizer([{"params": [torch.nn.Parameter(torch.ones(2))], "name": "heads"}],
                          OptimizerSpec(name, 3e-3, weight_decay=0.05), {}, torch.device("cpu"))
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["name"]) == (3e-3, 0.05, "heads")


def test_engine_trains_only_trainable_parameters_reports_the_largest_rate_and_uses_a_given_config():
    """Default groups leave frozen weights out of the optimizer (AdamW's decay would move them); `lr()` is the
    largest group's rate; a DeepSpeed config passed in (ZeRO-3 partitioned loading) is the one used."""
    env, dist_cfg = DistEnv(), DistributedConfig(gradient_clipping=0.0)
    init_engine_process_group(env, dist_cfg)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    model[0].requires_grad_(False)
    plan = plan_batch(2, 1, None)
    given = {**deepspeed_config(dist_cfg, plan, on_cpu=True), "gradient_clipping": 0.25}
    built = build_engine(model, None, optimizer=OptimizerSpec("adamw", 1e-2, weight_decay=0.5),
                         schedule=LRScheduleConfig(), total_steps=4, plan=plan, dist=dist_cfg, env=env,
                         ds_config=given)
    assert built.ds_config is given and built.engine.gradient_clipping() == 0.25
    in_optimizer = {id(p) for g in built.optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in model[1].parameters()}
    frozen = model[0].weight.detach().clone()
    for _ in range(2):
        built.engine.backward(built.engine(torch.randn(2, 3)).sum())
        built.engine.step()
    assert torch.equal(model[0].weight, frozen)

    torch.manual_seed(0)
    two = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    groups = [{"name": "slow", "params": list(two[0].parameters()), "lr": 1e-4},
              {"name": "fast", "params": list(two[1].parameters()), "lr": 5e-3}]
    built = build_engine(two, groups, optimizer=OptimizerSpec("adam", 1e-3), schedule=LRScheduleConfig(),
                         total_steps=4, plan=plan, dist=dist_cfg, env=env)
    assert built.lr() == pytest.approx(5e-3)


def test_seed_everything_seeds_python_numpy_and_torch():
    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    seed_everything(2**33 + 5)  # numpy takes seeds below 2**32 only
    first = draws()
    seed_everything(2**33 + 5)
    assert draws() == first
    seed_everything(6)
    assert all(a != b for a, b in zip(draws(), first))


@pytest.mark.parametrize("global_batch,world,micro,expected", [
    (32, 4, 2, (2, 4)), (32, 4, None, (8, 1)), (12, 3, 4, (4, 1)), (6, 1, 1, (1, 6)),
])
def test_batch_plan_multiplies_out_to_the_global_batch(global_batch, world, micro, expected):
    plan = plan_batch(global_batch, world, micro)
    assert (plan.micro_batch, plan.accumulation) == expected
    assert plan.micro_batch * plan.accumulation * plan.world_size == plan.global_batch == global_batch


@pytest.mark.parametrize("global_batch,world,micro,says", [
    (10, 4, None, "not divisible by world size 4"),
    (32, 4, 3, "not a multiple of micro batch 3 x world size 4 = 12"),
    (8, 2, 8, "not a multiple of micro batch 8 x world size 2 = 16"),  # more per step than the global batch
])
def test_batch_plan_refuses_combinations_that_do_not_multiply_out(global_batch, world, micro, says):
    with pytest.raises(ConfigError, match=f"vlm.global_batch_size: global batch {global_batch} is {says}"):
        plan_batch(global_batch, world, micro, key="vlm.global_batch_size")


def test_launcher_variables_and_an_explicit_backend(monkeypatch):
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    env = DistEnv.from_environment(torch.device("cpu"))
    assert (env.rank, env.world_size, env.local_rank, env.is_distributed, env.is_main) == (5, 8, 1, True, False)
    assert resolve_backend(DistributedConfig(backend="gloo"), torch.device("cuda", 0)) == "gloo"
    assert resolve_backend(DistributedConfig(), torch.device("cpu")) == "gloo"
