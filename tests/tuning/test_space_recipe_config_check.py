"""A space value the trial recipe refuses from the config alone (its `check_config`: a global batch the micro batch
times the trial's ranks does not divide, ...) passed the check at search start, which only built each value's config,
and failed every trial that drew it, after the search folder and its parent run were made. Now such a value is
refused before Ray starts (exit code 2), naming the key, the value and the recipe's own reason."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError


def _space(tmp_path, entry):
    path = tmp_path / "space.yaml"
    path.write_text(f"params:\n  train.global_batch_size: {entry}\n  train.lr: {{loguniform: [1.0e-4, 1.0e-3]}}\n")
    return path


def _cfg(tmp_path, *extra):
    return load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[stdout]", "tune.num_cpus=2",
                                    "distributed.micro_batch_per_gpu=4", *extra])


@pytest.mark.parametrize("entry, value", [("{choice: [16, 30]}", "choice 30"), ("{randint: [16, 33]}", "value 17"),
                                         ("{quniform: [16, 32, 2]}", "value 18")])
def test_a_value_the_recipe_refuses_is_named_before_ray_starts(tmp_path, monkeypatch, entry, value):
    from mmlnb_dist.tuning import driver

    monkeypatch.setattr(driver, "_init_ray", lambda cfg: pytest.fail("Ray started"))
    monkeypatch.setattr(driver, "check_recipe", lambda cfg: None)  # the base config's own check: no shard set here
    with pytest.raises(ConfigError, match=rf"'train\.global_batch_size' {value}.*not a multiple of micro batch 4"):
        driver.run_search(_cfg(tmp_path), _space(tmp_path, entry))
    assert not (tmp_path / "runs" / "tune").exists()


def test_the_trials_ranks_count(tmp_path):
    """The recipe checks the config for the world size a trial runs on (`tune.workers_per_trial`): 15 splits into
    micro batches of 3 on one rank (15 = 3 x 5), not over two (15 is odd)."""
    from mmlnb_dist.tuning.ranges import trial_config_check
    from mmlnb_dist.tuning.space import load_space

    path = _space(tmp_path, "{choice: [12, 15]}")
    one = _cfg(tmp_path, "distributed.micro_batch_per_gpu=3")
    load_space(path, one.model_dump(mode="json"), check=trial_config_check(one))
    two = _cfg(tmp_path, "distributed.micro_batch_per_gpu=3", "tune.workers_per_trial=2")
    with pytest.raises(ConfigError, match=r"'train\.global_batch_size' choice 15.*not divisible by world size 2"):
        load_space(path, two.model_dump(mode="json"), check=trial_config_check(two))
