"""What a resume may change, found unguarded by a mutation audit of `core/recipe.py`: more epochs, tracking and the
ranks' wait are allowed and recorded (each resume appended to `resume_changes.json`, `run.resume` itself never
listed); a setting outside the recipe's result sections is not compared; a change of length warns only under a
decaying learning-rate schedule."""
from __future__ import annotations

import json
import logging

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.config import save_config
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.recipe import check_resume_config, config_sections
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe


def _started(tmp_path, *overrides):
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=r", *overrides])
    save_config(cfg, cfg.run.dir / "config.yaml")
    return cfg.run.dir


def _resumed(tmp_path, *overrides):
    return load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=r", "run.resume=true", *overrides])


def test_allowed_changes_are_recorded_once_per_resume_without_run_resume(tmp_path):
    run_dir = _started(tmp_path, "train.epochs=2")
    check_resume_config(_resumed(tmp_path, "train.epochs=4", "distributed.rank0_wait_s=60"), run_dir, FusionRecipe)
    check_resume_config(_resumed(tmp_path, "train.epochs=6"), run_dir, FusionRecipe)
    resumes = json.loads((run_dir / "resume_changes.json").read_text())["resumes"]
    assert [r["changed"] for r in resumes] == [
        {"distributed.rank0_wait_s": [7 * 24 * 3600, 60], "train.epochs": [2, 4]},
        {"train.epochs": [2, 6]}]


def test_a_resume_that_changes_nothing_records_nothing(tmp_path):
    run_dir = _started(tmp_path)
    check_resume_config(_resumed(tmp_path), run_dir, FusionRecipe)
    assert not (run_dir / "resume_changes.json").exists()


def test_a_result_setting_is_refused_and_a_setting_outside_the_result_sections_is_not_compared(tmp_path):
    run_dir = _started(tmp_path)
    with pytest.raises(UserError, match=r"train\.lr: "):
        check_resume_config(_resumed(tmp_path, "train.lr=0.5"), run_dir, FusionRecipe, record=False)
    check_resume_config(_resumed(tmp_path, "vlm.lr=0.5"), run_dir, FusionRecipe, record=False)  # not fusion's
    assert "vlm" not in config_sections(_resumed(tmp_path), FusionRecipe.result_sections)
    assert set(config_sections(_resumed(tmp_path), None)) >= {"vlm", "fusion", "train"}


@pytest.mark.parametrize("schedule, warned", [("constant", False), ("cosine", True)])
def test_more_epochs_warn_only_under_a_decaying_schedule(tmp_path, caplog, schedule, warned):
    run_dir = _started(tmp_path, "train.epochs=2", f"train.lr_schedule.name={schedule}")
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.core.recipe"):
        check_resume_config(_resumed(tmp_path, "train.epochs=4", f"train.lr_schedule.name={schedule}"), run_dir,
                            FusionRecipe, record=False)
    said = [r.getMessage() for r in caplog.records if "learning-rate schedule" in r.getMessage()]
    assert said == (["train.epochs changed under a cosine learning-rate schedule (train.lr_schedule): the rest of "
                     "the schedule is stretched to the new length, so the result equals no uninterrupted run"]
                    if warned else []), caplog.text
