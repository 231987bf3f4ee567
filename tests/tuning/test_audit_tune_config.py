"""The `tune` config section's own bounds, found unguarded by a mutation audit of `config/tune.py`: settings Ray
would take and then misbehave on (`max_concurrent=0` is Ray's "no limit", a reduction factor of 1 divides by
log(1) in ASHA, a negative seed fails in numpy's generator once the search runs) are refused when the config is
read, naming the key, like any other config error."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.config.tune import TuneConfig
from mmlnb_dist.core.errors import ConfigError


@pytest.mark.parametrize("key, refused, lowest", [
    ("num_samples", 0, 1),
    ("max_concurrent", 0, 1),
    ("grace_period", 0, 1),
    ("reduction_factor", 1, 2),
    ("seed", -1, 0),
    ("max_t", 0, 1),
    ("num_cpus", 0, 1),
    ("workers_per_trial", 0, 1),
    ("max_failures", -1, 0),
])
def test_integer_settings_below_their_lowest_value_are_refused(key, refused, lowest):
    """One below the lowest value is refused; the lowest value itself is taken as given."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=key):
        TuneConfig(**{key: refused})
    assert getattr(TuneConfig(**{key: lowest}), key) == lowest


@pytest.mark.parametrize("key, refused", [("cpus_per_trial", 0.0), ("gpus_per_trial", -0.5),
                                          ("train_poll_interval_s", 0.0)])
def test_resource_settings_refuse_what_no_trial_can_run_with(key, refused):
    """Zero CPUs per worker (Ray would pack every trial on one core), a negative GPU share, a zero poll interval."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=key):
        TuneConfig(**{key: refused})
    assert TuneConfig(gpus_per_trial=0.0).gpus_per_trial == 0.0  # no GPU: the CPU search


def test_the_section_defaults_a_search_relies_on():
    """What an unset `tune` section searches with (the docs and the CPU demo's timings assume these)."""
    t = TuneConfig()
    assert (t.searcher, t.scheduler, t.num_samples, t.max_concurrent, t.grace_period, t.reduction_factor,
            t.seed, t.metric, t.mode, t.max_t) == ("random", "asha", 4, 1, 1, 2, 0, "val/balanced_accuracy", None,
                                                   None)


@pytest.mark.parametrize("override", ["tune.max_concurrent=0", "tune.reduction_factor=1", "tune.seed=-3",
                                      "tune.name=search[1]", "tune.storage_path=/tmp/tune*"])
def test_config_overrides_out_of_range_are_a_config_error_naming_the_key(override):
    """From the command line: a clear ConfigError naming the key (exit 2), not a failure once Ray has started. A
    glob character in the search name or its folder left trials whose best checkpoints never loaded back."""
    with pytest.raises(ConfigError, match=override.split("=")[0].split(".")[1]):
        load_config("cpu-demo", [override])


def test_max_concurrent_and_the_seed_reach_the_searcher():
    """`tune.max_concurrent` bounds both searchers (left out, Ray's generator runs every trial at once, 0 being
    its "no limit"), and Optuna gets `tune.seed` and the resolved mode."""
    from mmlnb_dist.tuning.algorithms import searcher

    basic = searcher(load_config("cpu-demo", ["tune.max_concurrent=3", "tune.seed=7"]))
    assert basic.max_concurrent == 3
    optuna = searcher(load_config("cpu-demo", ["tune.max_concurrent=3", "tune.seed=7", "tune.searcher=optuna",
                                               "tune.metric=val/loss"]))
    assert optuna.max_concurrent == 3
    assert (optuna.searcher._seed, optuna.searcher._metric, optuna.searcher._mode) == (7, "val/loss", "min")
