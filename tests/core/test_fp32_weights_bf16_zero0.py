"""At bf16 with ZeRO stage 0 DeepSpeed's optimizer is `FP16_UnfusedOptimizer`, whose parameters
`safe_get_full_fp32_param` does not know (None): the "fp32" export read the module's bf16 weights and lost the fp32
master weights' precision. A live engine's export holds the masters; a checkpoint file, whose masters carry no
parameter names, is read as the module's bf16 weights with a warning saying so. One tiny engine, one process."""
from __future__ import annotations

import logging

import pytest
import torch

from mmlnb_dist.core.checkpoint import CheckpointManager, epoch_tag, fp32_state_dict_from_checkpoint
from mmlnb_dist.core.distributed import DistEnv, init_engine_process_group, plan_batch
from mmlnb_dist.core.engine import OptimizerSpec, build_engine
from mmlnb_dist.core.fp32_weights import full_fp32_state_dict
from mmlnb_dist.core.sections import DistributedConfig, LRScheduleConfig


@pytest.fixture(scope="module")
def trained():
    """A Linear-BatchNorm-Linear model (the second Linear frozen) trained 3 steps at bf16, ZeRO-0."""
    env = DistEnv()
    dist_cfg = DistributedConfig(zero_stage=0, precision="bf16", gradient_clipping=0.0)
    init_engine_process_group(env, dist_cfg)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.BatchNorm1d(6), torch.nn.Linear(6, 3))
    model[2].requires_grad_(False)
    built = build_engine(model, None, optimizer=OptimizerSpec("adam", 1e-3), schedule=LRScheduleConfig(),
                         total_steps=10, plan=plan_batch(4, 1, None), dist=dist_cfg, env=env)
    engine = built.engine
    for _ in range(3):
        loss = engine(torch.randn(4, 6, dtype=torch.bfloat16)).float().pow(2).mean()
        engine.backward(loss)
        engine.step()
    return env, engine


def test_the_export_of_a_live_bf16_zero0_engine_holds_the_fp32_masters(trained):
    _, engine = trained
    opt = engine.optimizer
    assert type(opt).__name__ == "FP16_UnfusedOptimizer"  # the DeepSpeed path this covers
    masters = {id(p): m for ps, ms in zip(opt.fp16_groups, opt.fp32_groups) for p, m in zip(ps, ms)}
    state = full_fp32_state_dict(engine.module, engine.optimizer)
    for name, param in engine.module.named_parameters():
        if param.requires_grad:
            master = masters[id(param)].detach()
            assert not torch.equal(master, param.detach().float()), f"{name}: bf16 rounding shows no difference"
            assert torch.equal(state[name], master), f"{name}: exported the bf16 weights, not the fp32 masters"
        else:  # frozen: not in the optimizer, read from the module
            assert torch.equal(state[name], param.detach().float())
    assert all(state[k].dtype == torch.float32 for k in ("1.running_mean", "1.running_var"))
    assert torch.equal(state["1.num_batches_tracked"], engine.module[1].num_batches_tracked)


def test_a_bf16_zero0_checkpoint_file_is_read_as_its_bf16_weights_and_says_so(trained, tmp_path, caplog):
    env, engine = trained
    manager = CheckpointManager(tmp_path / "ckpt", env)
    manager.save(engine, epoch_tag(0), {})
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist"):
        tag, state = fp32_state_dict_from_checkpoint(tmp_path / "ckpt")
    assert tag == epoch_tag(0)
    assert torch.equal(state["0.weight"], engine.module[0].weight.detach().float())
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(tmp_path / "ckpt" / tag) in m and "bfloat16" in m and "fp32 master weights cannot be matched" in m
               for m in said), said
