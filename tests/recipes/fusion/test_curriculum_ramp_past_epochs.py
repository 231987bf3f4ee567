"""A curriculum ramp that ends at or after the last epoch (the paper's ramp 50..100 with `train.epochs=5`, the
cpu-demo's 3..6 with `train.epochs=5`) trained lambda part-way only (0.30 .. 0.53, never 1.0) and the user was
not told. The run keeps the schedule asked for (a search's trials and short smoke runs are legitimate) and now
warns when it starts, naming both values and the fix."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.recipes.fusion.config import CurriculumConfig
from mmlnb_dist.recipes.fusion.curriculum import curriculum_lambda, ramp_cut_short, trained_lambda
from support.fusion import ROOT, epoch_records, make_shards, tiny_config


def test_the_paper_ramp_in_five_epochs_is_named_with_the_fix():
    cur = CurriculumConfig()  # 0.3 -> 1.0 over 50..100
    assert [curriculum_lambda(cur, e) for e in range(5)] == pytest.approx([0.3] * 5)
    message = ramp_cut_short(cur, 5, two_branch=True)
    assert "ramp_start=50, ramp_end=100 with train.epochs=5" in message
    assert "never leaves fusion.curriculum.start=0.3" in message and "end=1" in message
    assert "ramp_end to at most 4" in message and "train.epochs above 100" in message


def test_a_ramp_cut_part_way_says_where_lambda_stops():
    cur = CurriculumConfig(ramp_start=3, ramp_end=6, step_every=1)  # the cpu-demo curriculum
    assert [curriculum_lambda(cur, e) for e in range(5)] == pytest.approx([0.3, 0.3, 0.3, 0.3, 0.3 + 0.7 / 3])
    assert "stops at 0.53 at the last epoch (4)" in ramp_cut_short(cur, 5, two_branch=True)


@pytest.mark.parametrize("epochs, cur, two_branch", [
    (7, CurriculumConfig(ramp_start=3, ramp_end=6, step_every=1), True),  # epoch 6 trains at `end`
    (150, CurriculumConfig(), True),
    (5, CurriculumConfig(enabled=False), True),  # lambda is 1 throughout
    (5, CurriculumConfig(schedule="constant"), True),
    (5, CurriculumConfig(start=1.0, end=1.0), True),  # nothing to reach
    (5, CurriculumConfig(), False),  # a single-branch model trains on the fused loss alone (lambda 1)
])
def test_no_warning_when_the_lambda_trained_ends_where_asked(epochs, cur, two_branch):
    assert ramp_cut_short(cur, epochs, two_branch) is None
    if two_branch and cur.enabled and cur.schedule != "constant":
        assert trained_lambda(cur, epochs - 1, two_branch) == pytest.approx(cur.end)


@pytest.mark.parametrize("profile", ["cpu-demo", "rtx4090", "node-8gpu", "multi-node"])
def test_the_shipped_fusion_profiles_train_their_whole_ramp(profile):
    cfg = load_config(ROOT / "mmlnb_dist" / "profiles" / f"{profile}.yaml")
    assert cfg.train.recipe == "fusion"
    assert ramp_cut_short(cfg.fusion.curriculum, cfg.train.epochs, two_branch=True) is None


def test_a_run_warns_and_trains_the_lambda_of_the_schedule_it_was_given(tmp_path, capsys):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.fusion.recipe import FusionRecipe

    shards = make_shards(tmp_path, n=30, size=32)
    cfg = tiny_config(shards, tmp_path / "runs", "short", [
        "train.epochs=2", "data.loader.image_size=32", "fusion.curriculum.ramp_start=0",
        "fusion.curriculum.ramp_end=3", "fusion.curriculum.step_every=1"])
    run(FusionRecipe, cfg)
    err = capsys.readouterr().err
    assert "ramp_start=0, ramp_end=3 with train.epochs=2" in err and "stops at 0.53 at the last epoch (1)" in err
    logged = [r["train_epoch/lambda"] for r in epoch_records(tmp_path / "runs" / "short")]
    assert logged == pytest.approx([curriculum_lambda(cfg.fusion.curriculum, e) for e in range(2)])
    assert logged == pytest.approx([0.3, 0.3 + 0.7 / 3])
