"""Pre-search checks (`tuning/checks.py`) found unguarded by a mutation audit: a resume is refused for a changed
`tune.mode` as well as a changed metric, a new search is not held to a stored goal, a trial that exactly fits the
local Ray instance is placed while one needing a GPU the machine lacks is refused, and the trial recipe's own check
sees the trials' world size. No test here starts Ray."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from mmlnb_dist.config import load_config

OUTSIDE = "tune.recipe=my_package.recipes:MyRecipe"  # a recipe outside the table: any metric, any mode


def _stored(tmp_path, metric, mode):
    """A search folder as the driver leaves it: its record of the goal, and Tune's state file beside it."""
    exp_dir = tmp_path / "tune" / "search"
    exp_dir.mkdir(parents=True)
    (exp_dir / "search.json").write_text(json.dumps({"metric": metric, "mode": mode}))
    (exp_dir / "tuner.pkl").write_bytes(b"not read: search.json says")
    return exp_dir


def test_a_resume_under_another_mode_of_the_same_metric_is_refused(tmp_path):
    """Ray restores the stored mode: a resume that asked for `min` on the same metric would have ASHA and the
    searcher maximise while the best-trial choice minimised."""
    from mmlnb_dist.config.tune import search_mode
    from mmlnb_dist.tuning.checks import SearchError, check_resume_goal

    exp_dir = _stored(tmp_path, "val/my_score", "max")
    cfg = load_config("cpu-demo", [OUTSIDE, "tune.metric=val/my_score", "tune.mode=min", "tune.resume=true"])
    with pytest.raises(SearchError, match=r"started with tune.metric=val/my_score tune.mode=max, and a resumed "
                                          r"search keeps its own: resume it with tune.metric=val/my_score "
                                          r"tune.mode=max"):
        check_resume_goal(cfg, exp_dir, search_mode(cfg))
    same = load_config("cpu-demo", [OUTSIDE, "tune.metric=val/my_score", "tune.resume=true"])
    check_resume_goal(same, exp_dir, search_mode(same))  # unset mode: max, as stored


def test_a_new_search_is_not_held_to_a_stored_goal(tmp_path):
    """Only a resume restores the stored goal: without tune.resume the goal check leaves the folder to the
    driver's own "already exists" refusal."""
    from mmlnb_dist.tuning.checks import check_resume_goal

    exp_dir = _stored(tmp_path, "val/loss", "min")
    cfg = load_config("cpu-demo", ["tune.metric=val/balanced_accuracy"])
    check_resume_goal(cfg, exp_dir, "max")


def _tune_cfg(*extra):
    return load_config("cpu-demo", [OUTSIDE, "tune.num_cpus=2", "tune.address=null", *extra])


def test_a_trial_that_exactly_fits_the_local_instance_is_placed(monkeypatch):
    """2 ranks x 1 CPU on a 2-CPU instance (kept worker groups: no trial process beside them) fits: refusing it
    would block the CPU demo's two-rank search."""
    from mmlnb_dist.tuning.checks import check_resources

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    check_resources(_tune_cfg("tune.workers_per_trial=2", "tune.cpus_per_trial=1"))
    check_resources(_tune_cfg("tune.cpus_per_trial=0.5", "tune.workers_per_trial=4"))


def test_a_trial_needing_more_gpus_than_the_machine_has_is_refused(monkeypatch):
    """Tune waits forever for a GPU that a local instance never gets."""
    import torch

    from mmlnb_dist.tuning.checks import SearchError, check_resources

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_resources(_tune_cfg("tune.gpus_per_trial=0.5", "tune.workers_per_trial=2"))  # 1 GPU: fits
    with pytest.raises(SearchError, match=r"needs 2 CPU .* and 2 GPU, but the local Ray instance has 2 CPU and 1 GPU"):
        check_resources(_tune_cfg("tune.gpus_per_trial=1", "tune.workers_per_trial=2"))


def test_the_recipes_own_check_sees_the_trials_world_size(monkeypatch):
    """A recipe's check depends on its world size (batch split over ranks): the check before Ray starts must see
    the trials' `workers_per_trial` ranks, not the driver's single process."""
    import mmlnb_dist.recipes as recipes
    from mmlnb_dist.tuning.checks import check_recipe

    seen = []
    monkeypatch.setattr(recipes, "load_class",
                        lambda target, *a: SimpleNamespace(check=lambda cfg, env: seen.append(env.world_size)))
    check_recipe(load_config("cpu-demo", ["tune.workers_per_trial=2"]))
    check_recipe(load_config("cpu-demo", [OUTSIDE, "tune.workers_per_trial=2"]))  # not in the table: not checked
    assert seen == [2]
