"""The engine builder: the DeepSpeed config carries no optimizer or scheduler, a user JSON that sets one is
rejected naming the key, and a frozen parameter group stays bit-identical under ZeRO 0 and 1 while the
schedule (not the recipe) holds its learning rate at 0."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmlnb_dist.core.distributed import DistEnv, init_engine_process_group, plan_batch
from mmlnb_dist.core.engine import OptimizerSpec, build_engine, deepspeed_config, read_user_deepspeed_json
from mmlnb_dist.core.errors import ConfigError
from mmlnb_dist.core.sections import DistributedConfig, LRScheduleConfig

ROOT = Path(__file__).resolve().parents[2]


def test_generated_config_leaves_optimizer_and_schedule_to_the_recipe():
    ds = deepspeed_config(DistributedConfig(zero_stage=2, precision="bf16"), plan_batch(32, 4, 2))
    assert "optimizer" not in ds and "scheduler" not in ds
    assert (ds["train_batch_size"], ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"]) == (32, 2, 4)
    assert ds["zero_optimization"]["stage"] == 2 and ds["bf16"] == {"enabled": True}


@pytest.mark.parametrize("keys", [["optimizer"], ["scheduler"], ["optimizer", "scheduler"]])
def test_user_json_that_sets_an_optimizer_or_scheduler_is_rejected_naming_the_keys(tmp_path, keys):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 1},
                                **{k: {"type": "Adam", "params": {"lr": 5e-3}} for k in keys}}))
    with pytest.raises(ConfigError) as err:
        read_user_deepspeed_json(path)
    for k in keys:
        assert repr(k) in str(err.value)
    assert "distributed.deepspeed_config" in str(err.value) and str(path) in str(err.value)


def test_user_json_is_kept_with_batch_keys_derived(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 1}, "train_batch_size": 999, "steps_per_print": 7}))
    ds = deepspeed_config(DistributedConfig(deepspeed_config=str(path)), plan_batch(16, 2, None))
    assert ds["zero_optimization"] == {"stage": 1} and ds["steps_per_print"] == 7
    assert (ds["train_batch_size"], ds["train_micro_batch_size_per_gpu"]) == (16, 8)


def test_train_command_rejects_the_conflicting_json_before_work(tmp_path, capsys):
    from mmlnb_dist.cli import main

    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}}))
    code = main(["train", "--config", str(ROOT / "launch/profiles/cpu-demo.yaml"), f"run.output_dir={tmp_path / 'runs'}",
                 f"distributed.deepspeed_config={path}", "tracking.backends=[stdout]"])
    assert code == 2
    assert "'optimizer'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("zero_stage", [0, 1])
def test_frozen_group_stays_bit_identical_while_the_other_trains(zero_stage):
    env = DistEnv()
    dist_cfg = DistributedConfig(zero_stage=zero_stage, gradient_clipping=0.0)
    init_engine_process_group(env, dist_cfg)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.Linear(6, 3))
    groups = [{"name": "encoder", "params": list(model[0].parameters())},
              {"name": "heads", "params": list(model[1].parameters())}]
    built = build_engine(model, groups, optimizer=OptimizerSpec("adam", 1e-2, weight_decay=1e-3),
                         schedule=LRScheduleConfig(), total_steps=12, plan=plan_batch(4, 1, None), dist=dist_cfg,
                         env=env)
    engine = built.engine

    def step():
        loss = engine(torch.randn(4, 6)).pow(2).mean()
        engine.backward(loss)
        engine.step()

    for _ in range(3):  # both train: Adam accumulates momentum and the L2 term acts on both
        step()
    model[0].requires_grad_(False)
    built.schedule.set_frozen(["encoder"])
    frozen = {k: v.detach().clone() for k, v in model[0].state_dict().items()}
    heads = {k: v.detach().clone() for k, v in model[1].state_dict().items()}
    for _ in range(4):
        step()
    for k, v in model[0].state_dict().items():
        assert torch.equal(v, frozen[k]), f"frozen {k} moved"
    assert any(not torch.equal(v, heads[k]) for k, v in model[1].state_dict().items()), "the heads did not train"
    assert built.schedule.get_last_lr()[0] == 0.0 and built.schedule.get_last_lr()[1] == pytest.approx(1e-2)
