"""Mutation-audit gaps of core.divergence: the error names the first non-finite loss of the step, frozen weights
(which no optimizer step changes) are not read for non-finite values, and an export with a single NaN is refused."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.divergence import LossWatch, TrainingDiverged, load_finite
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.sections import DistributedConfig


def test_the_error_names_the_first_non_finite_loss_of_the_step():
    watch = LossWatch(DistEnv(), {"train.lr": 0.1}, DistributedConfig())
    for loss in (0.4, float("inf"), float("nan")):
        watch.see(loss)
    with pytest.raises(TrainingDiverged, match="the loss was inf"):
        watch.step_done(True, "at step 2", None)


def test_frozen_non_finite_weights_are_not_taken_for_divergence():
    """A frozen parameter holding -inf (an additive mask kept as a parameter) is not what the step changed."""
    module = torch.nn.Linear(3, 2)
    module.mask = torch.nn.Parameter(torch.full((2,), float("-inf")), requires_grad=False)
    watch = LossWatch(DistEnv(), {"train.lr": 0.1}, DistributedConfig())
    watch.see(0.5)
    watch.step_done(True, "at step 1", module)
    with torch.no_grad():
        module.weight[1, 2] = float("nan")
    with pytest.raises(TrainingDiverged, match="non-finite weights"):
        watch.step_done(True, "at step 2", module)


def test_an_export_with_one_nan_is_refused_and_integer_tensors_pass(tmp_path):
    weights = torch.ones(4, 3)
    weights[2, 1] = float("nan")
    path = tmp_path / "model.safetensors"
    save_file({"steps": torch.tensor([3]), "head.bias": torch.zeros(3), "head.weight": weights}, str(path))
    with pytest.raises(UserError, match=r"1 tensor\(s\), first head.weight.*retrain"):
        load_finite(path, "retrain")
    weights[2, 1] = 0.0
    save_file({"steps": torch.tensor([3]), "head.weight": weights}, str(path))
    assert set(load_finite(path, "retrain")) == {"steps", "head.weight"}
