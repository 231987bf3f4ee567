"""A run killed under one version of mmlnb-dist and resumed under a newer one that added config settings.

The resume check compared the stored config.yaml with the new config key by key, and a key the stored file did not
have counted as a change: adding any setting (`vlm.keep_best`) refused `run.resume=true` for every run started
before the upgrade ("vlm.keep_best: '<absent>' -> False"). A setting missing from the stored config now stands for
its default, which is how the older version ran; a value other than the default is still refused."""
from __future__ import annotations

import pytest
import yaml

from mmlnb_dist.config import load_config
from mmlnb_dist.core.config import save_config
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.recipe import check_resume_config
from mmlnb_dist.recipes.fusion.recipe import FusionRecipe


def _stored_without(tmp_path, *dotted):
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=old"])
    run_dir = cfg.run.dir
    save_config(cfg, run_dir / "config.yaml")
    data = yaml.safe_load((run_dir / "config.yaml").read_text())
    for key in dotted:  # as written by a version without these settings
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[leaf]
    (run_dir / "config.yaml").write_text(yaml.safe_dump(data))
    return run_dir


def test_a_setting_added_since_the_run_started_does_not_refuse_its_resume(tmp_path):
    run_dir = _stored_without(tmp_path, "fusion.cache_frozen_features", "train.lr_schedule.warmup_ratio")
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=old", "run.resume=true"])
    check_resume_config(cfg, run_dir, FusionRecipe, record=False)


def test_a_new_setting_given_another_value_than_its_default_is_still_refused(tmp_path):
    run_dir = _stored_without(tmp_path, "fusion.cache_frozen_features")
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=old", "run.resume=true",
                                   "fusion.cache_frozen_features=false"])
    with pytest.raises(UserError, match=r"fusion\.cache_frozen_features: True -> False"):
        check_resume_config(cfg, run_dir, FusionRecipe, record=False)


def test_the_defaults_taken_for_missing_settings_are_said_and_recorded(tmp_path, caplog):
    """A default that does not reproduce the older version's behaviour would change the result unseen: the resume
    names the settings it took at their defaults (a warning) and records them in resume_changes.json."""
    import json

    run_dir = _stored_without(tmp_path, "fusion.cache_frozen_features")
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "run.name=old", "run.resume=true"])
    with caplog.at_level("WARNING", logger="mmlnb_dist.core.recipe"):
        check_resume_config(cfg, run_dir, FusionRecipe)
    assert any("fusion.cache_frozen_features=True" in r.getMessage() for r in caplog.records), caplog.text
    resumes = json.loads((run_dir / "resume_changes.json").read_text())["resumes"]
    assert resumes[-1]["assumed_defaults"] == {"fusion.cache_frozen_features": True}
    assert resumes[-1]["changed"] == {}
