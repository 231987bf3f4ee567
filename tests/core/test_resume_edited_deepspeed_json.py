"""A user's DeepSpeed JSON (`distributed.deepspeed_config`) edited at the same path between a kill and the resume
(another ZeRO stage, bf16 on) trains another model: the resume compared only the path and went on. It is now
refused naming the file, like any other result-changing setting, unless the recipe allows that key to change."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.config import save_config
from mmlnb_dist.core.errors import UserError
from mmlnb_dist.core.recipe import run


class SavesItsConfig:
    """A recipe that does what every recipe's setup does on disk (config.yaml) and trains nothing."""

    name = "saves"
    resume_may_change: tuple = ()
    trained: list = []

    def __init__(self, cfg, env, report=None):
        self.cfg = cfg

    def setup(self) -> None:
        save_config(self.cfg, self.cfg.run.dir / "config.yaml")

    def train(self) -> dict:
        type(self).trained.append(self.cfg.run.resume)
        return {}

    def evaluate(self, split):
        return {}

    def save_checkpoint(self):
        return None

    def cleanup(self, status: str = "FINISHED") -> None: ...


class AllowsTheJson(SavesItsConfig):
    resume_may_change = ("distributed.deepspeed_config",)


def _json(path, stage):
    path.write_text(json.dumps({"zero_optimization": {"stage": stage}, "gradient_clipping": 1.0}))
    return path


def _cfg(tmp_path, ds, resume):
    return load_config(None, [f"run.output_dir={tmp_path / 'runs'}", "run.name=r", "tracking.backends=[stdout]",
                              f"distributed.deepspeed_config={ds}", f"run.resume={str(resume).lower()}"])


def test_a_resume_after_the_deepspeed_json_was_edited_is_refused_naming_the_file(tmp_path):
    ds = _json(tmp_path / "ds.json", 0)
    SavesItsConfig.trained.clear()
    run(SavesItsConfig, _cfg(tmp_path, ds, False))
    run(SavesItsConfig, _cfg(tmp_path, ds, True))  # the same file: resumed
    _json(ds, 1)  # edited between the kill and the resume
    with pytest.raises(UserError, match=r"distributed\.deepspeed_config.*ds\.json"):
        run(SavesItsConfig, _cfg(tmp_path, ds, True))
    assert SavesItsConfig.trained == [False, True]
    _json(ds, 0)  # put back: resumes again
    run(SavesItsConfig, _cfg(tmp_path, ds, True))
    assert SavesItsConfig.trained == [False, True, True]


def test_a_recipe_that_allows_the_json_to_change_resumes_and_records_the_change(tmp_path):
    ds = _json(tmp_path / "ds.json", 0)
    AllowsTheJson.trained.clear()
    run(AllowsTheJson, _cfg(tmp_path, ds, False))
    _json(ds, 1)
    run(AllowsTheJson, _cfg(tmp_path, ds, True))
    assert AllowsTheJson.trained == [False, True]
    resumes = json.loads((tmp_path / "runs" / "r" / "resume_changes.json").read_text())["resumes"]
    assert [k for k in resumes[-1]["changed"] if "deepspeed_config" in k] != []
