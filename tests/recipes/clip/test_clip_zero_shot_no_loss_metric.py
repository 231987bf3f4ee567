"""Zero-shot runs report no `loss` (a BCE of scaled cosines measures nothing): a zero-shot config whose best
metric, search metric or registry metric is the loss would have no value to pick, tune or register by. `config
validate` (the same check starts `train`) refuses it naming the keys and the metrics that exist."""
from __future__ import annotations

import pytest

from mmlnb_dist.cli import main

PROFILE = "launch/profiles/clip-demo.yaml"
ZERO_SHOT = ["clip.model.fusion=zero_shot", "clip.model.image_encoder=clip", "clip.model.text_encoder=clip",
             "clip.model.towers.name=tiny"]


@pytest.mark.parametrize("overrides, key", [
    (["train.best_metric=loss"], "train.best_metric"),
    (["tune.metric=val/loss", "tune.mode=min"], "tune.metric"),
    (["tracking.register_metric=best/val/loss"], "tracking.register_metric"),
])
def test_zero_shot_with_the_loss_as_a_metric_is_refused(capsys, overrides, key):
    code = main(["config", "validate", "--config", PROFILE, *ZERO_SHOT, *overrides])
    err = capsys.readouterr().err
    assert code == 2, err
    assert key in err and "clip.model.fusion" in err and "micro_f1" in err, err


def test_zero_shot_with_a_reported_metric_passes(capsys):
    assert main(["config", "validate", "--config", PROFILE, *ZERO_SHOT, "train.best_metric=hamming_loss"]) == 0, \
        capsys.readouterr().err


def test_a_loss_chosen_study_leaves_its_zero_shot_row_out_before_training():
    """`ablate` and a search leave out what `unfit` names before the first row trains (the row failed at its turn)."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.clip.variants import unfit

    cfg = load_config(PROFILE, [*ZERO_SHOT, "train.best_metric=loss"])
    assert "train.best_metric" in (unfit(cfg) or "")
    assert unfit(load_config(PROFILE, ZERO_SHOT)) is None
