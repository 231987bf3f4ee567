"""A resume may change the settings that only decide whether a run goes on, not what it computes: the shard-file
preflight (`data.loader.preflight`: a resumed run on a large set skips the hour-long checksum it did at the first
start) and the bad-sample budget (`data.loader.max_bad_sample_rate`: a run stopped by too many bad samples resumes
with a larger budget, the skipped samples being the same). Both were refused as if they changed results
("data.loader.preflight: checksum -> size ... continuing it would mix two results"). A loader setting that changes
which samples are read (`max_member_bytes`) is still refused."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.config import save_config
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.recipe import check_resume_config
from mmlnb_dist.recipes import recipe_class


@pytest.mark.parametrize("recipe,profile", [("fusion", "cpu-demo"), ("clip", "clip-demo")])
def test_preflight_and_the_bad_sample_budget_may_change_on_resume_and_are_recorded(tmp_path, recipe, profile):
    cfg = load_config(profile, [f"run.output_dir={tmp_path}", "run.name=r"])
    save_config(cfg, cfg.run.dir / "config.yaml")
    resumed = load_config(profile, [f"run.output_dir={tmp_path}", "run.name=r", "run.resume=true",
                                    "data.loader.preflight=size", "data.loader.max_bad_sample_rate=0.2"])
    check_resume_config(resumed, cfg.run.dir, recipe_class(recipe))
    changed = json.loads((cfg.run.dir / "resume_changes.json").read_text())["resumes"][-1]["changed"]
    assert changed == {"data.loader.preflight": ["checksum", "size"],
                       "data.loader.max_bad_sample_rate": [cfg.data.loader.max_bad_sample_rate, 0.2]}


def test_a_loader_setting_that_changes_what_is_read_is_still_refused(tmp_path):
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=r"])
    save_config(cfg, cfg.run.dir / "config.yaml")
    resumed = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=r", "run.resume=true",
                                       "data.loader.max_member_bytes=1000"])
    with pytest.raises(UserError, match=r"data\.loader\.max_member_bytes: \d+ -> 1000"):
        check_resume_config(resumed, cfg.run.dir, recipe_class("fusion"))
