"""How a search's settings resolve, found unguarded by a mutation audit of `config/tune.py`: where trials run
(worker groups or the trial process), whether trial processes are reused, the direction of a metric of a recipe
outside the table, and which j-of-k accuracies a clip trial reports for its `top_k`."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import ConfigError, load_config
from mmlnb_dist.config.tune import TuneConfig, metric_direction, reported_metrics, reporting_recipe, search_mode


def test_trials_run_in_worker_groups_only_when_they_have_several_ranks_or_are_told_to():
    assert not TuneConfig().worker_groups and TuneConfig(workers_per_trial=2).worker_groups
    assert TuneConfig(use_ray_train=True).worker_groups
    assert not TuneConfig(use_ray_train=False).worker_groups
    assert TuneConfig(use_ray_train=None, workers_per_trial=3).workers_per_trial == 3  # auto: a worker group


def test_several_ranks_in_the_trial_process_are_refused_naming_both_settings():
    with pytest.raises(ConfigError, match="workers_per_trial=2 needs use_ray_train true"):
        load_config(None, ["tune.use_ray_train=false", "tune.workers_per_trial=2"])


def test_trial_processes_are_reused_unless_each_trial_starts_a_torchtrainer_or_the_user_says():
    assert TuneConfig().reuse_trial_processes  # the trial process
    assert TuneConfig(workers_per_trial=2).reuse_trial_processes  # kept worker groups
    assert not TuneConfig(workers_per_trial=2, worker_pool=False).reuse_trial_processes  # a TorchTrainer per trial
    assert not TuneConfig(reuse_actors=False).reuse_trial_processes
    assert TuneConfig(workers_per_trial=2, worker_pool=False, reuse_actors=True).reuse_trial_processes


def test_a_recipe_outside_the_table_is_searched_with_the_mode_its_metric_name_suggests():
    """`package.module:Name` may report any name: a loss of the table's is minimised, an unknown name maximised
    (nothing says otherwise), and a mode given is taken as given."""
    cfg = load_config(None, ["tune.recipe=mypkg.recipes:Probe", "tune.metric=val/loss"])
    assert reporting_recipe(cfg) is None
    assert metric_direction(cfg) == "min" and search_mode(cfg) == "min"
    assert metric_direction(cfg, "val/hamming_loss") == "min"
    cfg = load_config(None, ["tune.recipe=mypkg.recipes:Probe", "tune.metric=val/my_score"])
    assert metric_direction(cfg) is None and search_mode(cfg) == "max"
    cfg = load_config(None, ["tune.recipe=mypkg.recipes:Probe", "tune.metric=val/my_score", "tune.mode=min"])
    assert search_mode(cfg) == "min"


def test_a_pipeline_trial_reports_its_training_recipes_metrics():
    cfg = load_config(None, ["tune.recipe=vlm-fusion", "tune.metric=val/loss"])
    assert reporting_recipe(cfg).name == "fusion" and search_mode(cfg) == "min"


def test_a_clip_trial_reports_the_j_of_k_accuracies_up_to_its_top_k():
    cfg = load_config("clip-demo", ["clip.top_k=2"])
    from mmlnb_dist.recipes import RECIPES

    metrics = reported_metrics(cfg, RECIPES["clip"])
    assert "val/at_least_2_of_top_k" in metrics and "val/at_least_3_of_top_k" not in metrics
    assert load_config("clip-demo", ["tune.recipe=clip", "clip.top_k=2",
                                     "tune.metric=val/at_least_2_of_top_k"]).tune.metric == "val/at_least_2_of_top_k"
    with pytest.raises(ConfigError, match="at_least_3_of_top_k"):
        load_config("clip-demo", ["tune.recipe=clip", "clip.top_k=2", "tune.metric=val/at_least_3_of_top_k"])
