"""core.divergence.LossWatch: a non-finite loss, or a step that leaves non-finite weights, stops training at that
optimizer step on every rank at once; an fp16 step DeepSpeed's loss scaler skipped does not. The recipes' wiring
(nothing of the diverged step saved) is drilled in tests/drills/test_drill_diverged.py."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.divergence import LossWatch, TrainingDiverged
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.sections import DistributedConfig

from support.ranks import run_ranks

LRS = {"train.lr": 0.5}


def _module(value: float = 1.0) -> torch.nn.Module:
    module = torch.nn.Linear(3, 2)
    with torch.no_grad():
        module.weight.fill_(value)
    return module


def test_a_finite_step_passes_and_huge_finite_weights_are_not_taken_for_overflow():
    watch = LossWatch(DistEnv(), LRS, DistributedConfig())
    for loss in (0.7, 1e30):
        watch.see(loss)
        watch.step_done(True, "at step 1", _module(1e30))  # a 2-norm of these weights would overflow to inf


@pytest.mark.parametrize("loss, weight, says", [
    (float("nan"), 1.0, "the loss was nan"),
    (float("inf"), 1.0, "the loss was inf"),
    (0.3, float("nan"), "the loss was finite but the step left non-finite weights"),
])
def test_a_non_finite_loss_or_weight_stops_the_step_with_a_user_error_naming_it(loss, weight, says):
    watch = LossWatch(DistEnv(), LRS, DistributedConfig())
    watch.see(0.2)
    watch.see(loss)
    with pytest.raises(TrainingDiverged, match=f"training diverged at step 7 of epoch 1: {says}") as err:
        watch.step_done(True, "at step 7 of epoch 1", _module(weight))
    assert isinstance(err.value, UserError)  # the CLI prints it and exits 2
    assert "lower the learning rate (train.lr=0.5)" in str(err.value)
    assert "gradient_clipping" not in str(err.value) and "precision" not in str(err.value)  # both already fine


def test_the_error_names_clipping_and_precision_only_when_they_are_the_way_out():
    watch = LossWatch(DistEnv(), LRS, DistributedConfig(precision="fp16", gradient_clipping=0.0))
    watch.see(float("nan"))
    with pytest.raises(TrainingDiverged) as err:
        watch.step_done(True, "at step 1", _module())
    assert "distributed.gradient_clipping=1.0" in str(err.value) and "bf16 or fp32" in str(err.value)


def test_an_fp16_step_the_loss_scaler_skipped_is_counted_not_fatal_and_the_next_step_starts_clean():
    watch = LossWatch(DistEnv(), LRS, DistributedConfig(precision="fp16"))
    watch.see(float("inf"))
    watch.step_done(False, "at step 1", _module(float("nan")))  # skipped: the weights are not read
    assert watch.skipped == 1
    watch.see(0.5)
    watch.step_done(True, "at step 2", _module())


RANK = """
import json, os, sys, torch, torch.distributed as dist
from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.divergence import LossWatch, TrainingDiverged
from mmlnb_dist.core.sections import DistributedConfig
rank, out, bad_at, kind = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
dist.init_process_group("gloo", rank=rank, world_size=2)
watch = LossWatch(DistEnv(rank=rank, world_size=2), {"train.lr": 0.5}, DistributedConfig())
module = torch.nn.Linear(3, 2)
stopped = None
for step in range(1, 7):
    watch.see(float("nan") if kind == "loss" and step == bad_at else 0.5)
    if kind == "weight" and step == bad_at:
        with torch.no_grad():
            module.weight[0, 0] = float("inf")  # this rank's share of the weights (a ZeRO-3 partition)
    try:
        watch.step_done(True, f"at step {step}", module)
    except TrainingDiverged as e:
        stopped = [step, str(e)]
        break
json.dump(stopped, open(out, "w"))
dist.destroy_process_group()
"""


@pytest.mark.parametrize("kind", ["loss", "weight"])
def test_one_ranks_non_finite_loss_or_weights_stop_every_rank_at_the_same_step(tmp_path, kind):
    """Rank 1 alone goes bad at step 3: both ranks raise there (a rank stopping alone would leave the other
    waiting in its next collective), and each says how many ranks saw it."""
    outs = [tmp_path / f"rank{r}.json" for r in range(2)]
    run_ranks(RANK, lambda r: (outs[r], 3 if r == 1 else 99, kind))
    got = [json.loads(Path(o).read_text()) for o in outs]
    assert [g[0] for g in got] == [3, 3], got
    assert all("training diverged at step 3: on 1 of 2 ranks" in g[1] for g in got), got
    assert "the loss and weights were finite on this rank" in got[0][1]
    assert ("the loss was nan" if kind == "loss" else "non-finite weights") in got[1][1]
