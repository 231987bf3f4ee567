"""A run killed before its first checkpoint, resumed with a changed result setting, was refused with "continuing
it would mix two results" and the remedy "resume with the stored settings, or start a new run under another
run.name", though nothing was trained to mix with: the same run.name without run.resume starts it afresh. The
refusal now says so when the run folder holds no checkpoint; with a checkpoint it is unchanged."""
from __future__ import annotations

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.config import save_config
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.recipe import check_resume_config
from mmlnb_dist.recipes import recipe_class

PROFILE = "clip-demo"


def _refusal(tmp_path) -> str:
    cfg = load_config(PROFILE, [f"run.output_dir={tmp_path}", "run.name=r"])
    save_config(cfg, cfg.run.dir / "config.yaml")  # what a run writes at start, before it trains
    return cfg, load_config(PROFILE, [f"run.output_dir={tmp_path}", "run.name=r", "run.resume=true", "train.lr=0.5"])


def test_a_run_without_a_checkpoint_is_told_a_plain_rerun_works(tmp_path):
    cfg, resumed = _refusal(tmp_path)
    with pytest.raises(UserError) as err:
        check_resume_config(resumed, cfg.run.dir, recipe_class("clip"))
    said = str(err.value)
    assert "train.lr" in said and "no checkpoint" in said and "without run.resume" in said, said


def test_a_run_with_a_checkpoint_is_not_told_to_rerun(tmp_path):
    cfg, resumed = _refusal(tmp_path)
    (cfg.run.dir / "checkpoints" / "epoch-0000").mkdir(parents=True)
    with pytest.raises(UserError) as err:
        check_resume_config(resumed, cfg.run.dir, recipe_class("clip"))
    said = str(err.value)
    assert "train.lr" in said and "without run.resume" not in said, said
