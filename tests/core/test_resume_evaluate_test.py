"""`train.evaluate_test` only decides whether the finish also scores the best checkpoint on the test split: no
weight depends on it (the test split is never trained on nor picks the best). A run started with it off (as a
search's trials are) was refused a resume that asked for its test numbers ("train.evaluate_test: False -> True
... continuing it would mix two results"). It may change now, recorded with the resume's other changes."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.config import save_config
from mmlnb_dist.core.recipe import check_resume_config
from mmlnb_dist.recipes import recipe_class


@pytest.mark.parametrize("recipe,profile", [("fusion", "cpu-demo"), ("clip", "clip-demo")])
def test_a_resume_may_ask_for_the_test_evaluation_and_it_is_recorded(tmp_path, recipe, profile):
    cfg = load_config(profile, [f"run.output_dir={tmp_path}", "run.name=r", "train.evaluate_test=false"])
    save_config(cfg, cfg.run.dir / "config.yaml")
    resumed = load_config(profile, [f"run.output_dir={tmp_path}", "run.name=r", "run.resume=true",
                                    "train.evaluate_test=true"])
    check_resume_config(resumed, cfg.run.dir, recipe_class(recipe))
    changed = json.loads((cfg.run.dir / "resume_changes.json").read_text())["resumes"][-1]["changed"]
    assert changed == {"train.evaluate_test": [False, True]}
