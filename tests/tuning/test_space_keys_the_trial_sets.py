"""A space may not search the keys every trial sets itself: its run folder (`run.name`, `run.output_dir`,
`run.resume`, `run.cache_dir`), its tracking (`tracking.uri`, `tracking.parent_run_id`, `tracking.register_name`),
`train.evaluate_test` (trials never see test) and the search's own `tune.*` settings (read by the driver, not by a
trial). Such a key was accepted and then replaced in every trial: all trials trained alike on it, and `best.yaml` and
the parent run's `best.*` tags named a "best" value that changed nothing. Refused before Ray starts, naming the keys."""
from __future__ import annotations

import pytest

from mmlnb_dist.tuning.checks import check_space_is_read
from mmlnb_dist.tuning.space import SpaceError
from mmlnb_dist.tuning.trial import trial_config


@pytest.mark.parametrize("key", ["run.name", "run.output_dir", "run.cache_dir", "tracking.register_name",
                                 "train.evaluate_test", "tune.num_samples", "tune.reduction_factor"])
def test_a_key_every_trial_sets_itself_is_refused(key):
    space = {"train.lr": {"loguniform": [1e-4, 1e-2]}, key: {"choice": [1, 2]}}
    with pytest.raises(SpaceError, match=rf"space\.yaml: {key.replace('.', '[.]')} is set by the search itself"):
        check_space_is_read(space, "fusion", "space.yaml")


def test_the_refused_keys_are_the_ones_a_trial_config_replaces():
    """The list the check refuses is what `trial_config` overrides (and `tune.*`): searching `run.seed` or
    `tracking.experiment` is still allowed, as the trial keeps them."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.tuning.trial import TRIAL_SET_KEYS

    base = load_config("cpu-demo").model_dump(mode="json")
    ctx = {"base": base, "space": {}, "name": "s", "trials_dir": "/tmp/t", "cache_dir": "/tmp/c", "uri": None,
           "parent_run_id": None}
    built = trial_config({}, ctx, "x")["cfg"]
    changed = sorted(f"{section}.{key}" for section in ("run", "tracking", "train") for key in base[section]
                     if built[section][key] != base[section][key])
    assert set(changed) <= set(TRIAL_SET_KEYS), changed
    check_space_is_read({"run.seed": {"choice": [0, 1]}, "tracking.experiment": {"choice": ["a", "b"]}}, "fusion",
                        "space.yaml")
