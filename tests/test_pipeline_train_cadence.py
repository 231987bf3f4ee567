"""A pipeline rerun whose only change is how the train stage logs, checkpoints or checks its shards (settings its
recipe's resume accepts: `core.recipe.RESUME_MAY_CHANGE`) trained the classifier again from scratch: the train
stage's fingerprint held the whole `train` and `data.loader` sections, so `train.checkpoint_every_steps=100`
added to a run killed after hours deleted its run folder (checkpoints included), and `train.log_every` on a
finished run retrained it. Such a change now resumes or keeps the stage; a setting that changes the model still
rebuilds it."""
from __future__ import annotations

import dataclasses
import json

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.recipe import RESUME_MAY_CHANGE
from mmlnb_dist.pipeline.stages import StageResult, fingerprint, run_planned, stage_file
from mmlnb_dist.core.recipe import TRAIN_CADENCE
from mmlnb_dist.pipeline.steps import plan_train


def _plan(tmp_path, overrides):
    cfg = load_config(None, [f"run.output_dir={tmp_path / 'runs'}", "run.name=p", *overrides])
    return plan_train(cfg, StageResult("shards", tmp_path / "shards", "s1", True, 0.0, status="skipped"))


def _train(tmp_path, overrides, calls=None):
    stage = _plan(tmp_path, overrides)

    def work(resume):
        if calls is not None:
            calls.append(resume)
        stage.output.mkdir(parents=True, exist_ok=True)
        (stage.output / "model.txt").write_text("trained")
        return {"metrics": {}}

    return run_planned(dataclasses.replace(stage, work=work))


@pytest.mark.parametrize("changed", ["train.log_every=3", "train.checkpoint_every=2",
                                     "train.checkpoint_every_steps=100", "train.keep_checkpoints=5",
                                     "train.eval_batch_size=8", "data.loader.preflight=size",
                                     "data.loader.max_bad_sample_rate=0.05"])
def test_a_cadence_change_keeps_a_finished_train_stage(tmp_path, changed):
    _train(tmp_path, [])
    again = _train(tmp_path, [changed])
    assert again.status == "skipped", (changed, again.rebuilt)


def test_a_stopped_train_stage_resumes_with_step_checkpoints_turned_on(tmp_path):
    first = _plan(tmp_path, [])
    first.output.mkdir(parents=True)
    (first.output / "checkpoint").write_text("epoch 3 of 10")
    stage_file(first.output).write_text(json.dumps({"fingerprint": first.fingerprint, "status": "running"}))
    calls = []
    result = _train(tmp_path, ["train.checkpoint_every_steps=100"], calls)
    assert calls == [True], "the stopped training was started again instead of resumed"
    assert result.rebuilt is None
    assert (first.output / "checkpoint").read_text() == "epoch 3 of 10"


def test_a_setting_of_the_model_still_rebuilds_it(tmp_path):
    _train(tmp_path, [])
    for changed, named in (("train.lr=0.5", "train.lr"), ("train.epochs=3", "train.epochs"),
                           ("train.eval_every=2", "train.eval_every"), ("data.loader.image_size=64",
                                                                        "data.loader.image_size")):
        again = _train(tmp_path, [changed])
        assert again.status == "ran" and named in (again.rebuilt or ""), (changed, again.rebuilt)


def test_a_stage_recorded_before_keeps_its_fingerprint(tmp_path):
    """A train stage finished before cadence left its fingerprint is still up to date (no retraining on upgrade)."""
    stage = _plan(tmp_path, [])
    cfg = load_config(None, [f"run.output_dir={tmp_path / 'runs'}", "run.name=p"])
    old = fingerprint("train", "s1", cfg.run.seed, cfg.fusion.model_dump(), cfg.train.model_dump(),
                      cfg.distributed.results_dump(), cfg.data.loader.model_dump())
    assert stage.fingerprint != old
    stage.output.mkdir(parents=True)
    stage_file(stage.output).write_text(json.dumps({"fingerprint": old, "status": "done"}))
    assert _train(tmp_path, []).status == "skipped"


def test_every_cadence_setting_is_one_a_resume_accepts():
    """Left out of the fingerprint, a changed one resumes the stage: the recipe must accept it then."""
    for section, names in TRAIN_CADENCE.items():
        for name in names:
            assert f"{section}.{name}" in RESUME_MAY_CHANGE, f"{section}.{name}"


def test_a_rebuild_of_a_stage_recorded_before_names_only_what_the_user_changed(tmp_path):
    stage = _plan(tmp_path, [])
    cfg = load_config(None, [f"run.output_dir={tmp_path / 'runs'}", "run.name=p"])
    old = fingerprint("train", "s1", cfg.run.seed, cfg.fusion.model_dump(), cfg.train.model_dump(),
                      cfg.distributed.results_dump(), cfg.data.loader.model_dump())
    settings = {**stage.settings, "train.log_every": 10, "data.loader.preflight": "checksum"}  # as recorded then
    stage.output.mkdir(parents=True)
    stage_file(stage.output).write_text(json.dumps({"fingerprint": old, "status": "done", "settings": settings}))
    assert _train(tmp_path, ["train.lr=0.001"]).rebuilt == "train.lr 0.0001 -> 0.001"
