"""A space file holds `params` (and a `description`) only. Settings a user of W&B sweeps or Optuna writes beside the
parameters (`metric:`, `method:`/`searcher:`, `num_samples:`) were read as nothing, without a word: the search ran on
the default `tune.metric`, searcher and sample count. Now the file is refused, naming the keys and the `tune.*`
settings that do it; a W&B-style `parameters:` (without `params:`) is named as such."""
from __future__ import annotations

import pytest

from mmlnb_dist.tuning.space import SpaceError, load_space

PARAMS = "params:\n  train.lr: {loguniform: [1.0e-4, 1.0e-3]}\n"


def test_settings_beside_the_params_are_refused_naming_them(tmp_path):
    space = tmp_path / "sweep.yaml"
    space.write_text("description: lr\nmetric: val/loss\nmethod: bayes\n" + PARAMS)
    with pytest.raises(SpaceError, match=r"sweep\.yaml: unknown top-level keys \['method', 'metric'\]: a space file "
                                         r"holds 'params' and 'description' only; .*tune\.metric.*tune\.searcher"):
        load_space(space)
    space.write_text("description: lr\n" + PARAMS)  # the shipped layout still loads
    assert list(load_space(space)) == ["train.lr"]


def test_a_wandb_parameters_mapping_is_named(tmp_path):
    space = tmp_path / "sweep.yaml"
    space.write_text(PARAMS.replace("params:", "parameters:"))
    with pytest.raises(SpaceError, match=r"'parameters'.*rename it 'params'"):
        load_space(space)
