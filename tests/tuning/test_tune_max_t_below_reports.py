"""`tune.max_t` below the reports a trial makes (one per `train.epochs` epoch): Ray's ASHA stops every trial at
max_t, so no trial trained the epochs the user set (no test split, no export, no result file), the "best" config
was picked from partial runs, and `best.yaml` then trains the full epochs. Now refused before anything is written,
naming both numbers and the fix."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.errors import ConfigError

SMOKE = "tune.recipe=mmlnb_dist.tuning.smoke:run"  # reports once per epoch


def _cfg(tmp_path, *extra):
    return load_config("cpu-demo", [f"run.output_dir={tmp_path}/runs", "tracking.backends=[stdout]", SMOKE,
                                    "tune.num_cpus=2", "tune.space=optimisation", *extra])


def test_max_t_below_the_epochs_is_refused_before_ray_starts(tmp_path, monkeypatch):
    from mmlnb_dist.tuning import driver

    monkeypatch.setattr(driver, "_init_ray", lambda cfg: pytest.fail("Ray started"))
    with pytest.raises(ConfigError, match=r"tune\.max_t=2 is less than the 4 reports.*train\.epochs=4.*"
                                          r"tune\.max_t to at least 4"):
        driver.run_search(_cfg(tmp_path, "train.epochs=4", "tune.max_t=2", "tune.grace_period=1"), "optimisation")
    assert not (tmp_path / "runs" / "tune").exists()


@pytest.mark.parametrize("extra", [
    ["train.epochs=4", "tune.max_t=4"],
    ["train.epochs=4", "tune.max_t=6"],
    ["train.epochs=4", "tune.max_t=2", "tune.scheduler=fifo"],  # FIFO has no max_t
])
def test_a_max_t_that_lets_trials_finish_passes(tmp_path, extra):
    from mmlnb_dist.tuning.checks import check_search

    check_search(_cfg(tmp_path, "tune.grace_period=1", *extra))


# quniform: Ray's qrandint on an integer field, high end included (it was not counted: ASHA stopped its 8-epoch trials
# at max_t=5); a choice holding 6.0, which the integer field takes as 6 (it was not counted either)
@pytest.mark.parametrize("entry, most", [("{choice: [3, 6]}", 6), ("{randint: [2, 8]}", 7),
                                         ("{quniform: [2, 8, 2]}", 8), ("{choice: [3, 6.0]}", 6)])
def test_max_t_below_the_longest_trial_of_a_space_varying_epochs_is_refused(tmp_path, entry, most):
    from mmlnb_dist.tuning.checks import check_search
    from mmlnb_dist.tuning.space import load_space

    path = tmp_path / "space.yaml"
    path.write_text(f"params:\n  train.epochs: {entry}\n  train.lr: {{loguniform: [1.0e-4, 1.0e-3]}}\n")
    cfg = _cfg(tmp_path, "train.epochs=4", "tune.max_t=5", "tune.grace_period=1")
    with pytest.raises(ConfigError, match=rf"tune\.max_t=5 is less than the {most} reports.*space\.yaml.*"
                                          rf"tune\.max_t to at least {most}"):
        check_search(cfg, load_space(path), path)
    assert check_search(_cfg(tmp_path, "train.epochs=4", f"tune.max_t={most}"), load_space(path), path) == most
