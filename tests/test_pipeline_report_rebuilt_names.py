"""A stage rebuilt because its inputs or settings changed was reported as "rebuilt: its inputs or settings changed"
without saying which: a user could not tell whether their override or an upstream change caused a long rebuild.
The stage record now keeps the fingerprinted settings and inputs beside the fingerprint, and the report and the
log name what changed (a few names at most)."""
from __future__ import annotations

import dataclasses
import logging

from mmlnb_dist.config import load_config
from mmlnb_dist.pipeline.report import stage_rows
from mmlnb_dist.pipeline.stages import StageResult, run_planned
from mmlnb_dist.pipeline.steps import plan_describe, plan_shards, plan_train


def _train(tmp_path, overrides, shards_fp="s1"):
    cfg = load_config(None, [f"run.output_dir={tmp_path / 'runs'}", "run.name=p", *overrides])
    shards = StageResult("shards", tmp_path / "shards", shards_fp, True, 0.0, status="skipped")
    stage = plan_train(cfg, shards)

    def work(resume):
        stage.output.mkdir(parents=True, exist_ok=True)
        (stage.output / "model.txt").write_text("trained")
        return {"metrics": {}}

    return run_planned(dataclasses.replace(stage, work=work))


def test_a_changed_override_is_named_in_the_report_and_the_log(tmp_path, caplog):
    assert _train(tmp_path, ["train.lr=0.001"]).rebuilt is None
    assert _train(tmp_path, ["train.lr=0.001"]).status == "skipped"
    with caplog.at_level(logging.INFO, logger="mmlnb_dist.pipeline"):
        again = _train(tmp_path, ["train.lr=0.0003"])
    row = stage_rows([again])[2]
    assert "(rebuilt: train.lr 0.001 -> 0.0003)" in row, row
    assert any("train.lr 0.001 -> 0.0003" in r.getMessage() and "rebuilding" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_an_upstream_change_is_named_as_its_input_and_a_long_list_is_capped(tmp_path):
    _train(tmp_path, [])
    upstream = _train(tmp_path, [], shards_fp="s2")
    assert upstream.rebuilt == "shards changed", upstream.rebuilt
    many = _train(tmp_path, ["train.lr=0.5", "train.epochs=3", "train.weight_decay=0.1", "train.eval_every=2",
                             "run.seed=7"], shards_fp="s3")
    assert many.rebuilt == "run.seed 0 -> 7; shards changed; train.epochs 150 -> 3 and 3 more", many.rebuilt


def test_the_shards_stage_names_a_changed_build_setting(tmp_path):
    def shards(overrides):
        cfg = load_config(None, [f"data.shards={tmp_path / 'shards'}", *overrides])
        stage = plan_shards(cfg, StageResult("patches", tmp_path / "patches", "p1", True, 0.0, status="input"))

        def work(resume):
            stage.output.mkdir(parents=True, exist_ok=True)
            return {}

        return run_planned(dataclasses.replace(stage, work=work))

    shards([])
    assert shards(["data.build.val_fraction=0.3"]).rebuilt == "data.build.val_fraction 0.2 -> 0.3"


def test_the_describe_stage_names_a_changed_generation_setting_and_a_new_adapter(tmp_path):
    def describe(overrides, adapter_fp="a1"):
        cfg = load_config(None, [f"run.output_dir={tmp_path / 'runs'}", *overrides])
        vlm = StageResult("finetune-vlm", tmp_path / "runs" / "ft", adapter_fp, True, 0.0, {"adapter_dir": "x"})
        stage = plan_describe(cfg, vlm, StageResult("shards", tmp_path / "shards", "s1", True, 0.0))

        def work(resume):
            stage.output.mkdir(parents=True, exist_ok=True)
            return {}

        return run_planned(dataclasses.replace(stage, work=work))

    describe([])
    assert describe(["vlm.generation.max_new_tokens=64"]).rebuilt == "vlm.generation.max_new_tokens 256 -> 64"
    assert describe(["vlm.generation.max_new_tokens=64"], adapter_fp="a2").rebuilt == "finetune-vlm changed"


def test_a_stage_that_stopped_still_names_what_changed(tmp_path):
    """The record a stopped stage leaves (open, with why it stopped) kept no settings, so the next run with a
    changed setting said only "its inputs or settings changed"."""
    import pytest

    cfg = load_config(None, [f"run.output_dir={tmp_path / 'runs'}", "run.name=p", "train.lr=0.001"])
    stage = plan_train(cfg, StageResult("shards", tmp_path / "shards", "s1", True, 0.0, status="skipped"))

    def stopped(resume):
        stage.output.mkdir(parents=True, exist_ok=True)
        raise RuntimeError("killed mid-epoch")

    with pytest.raises(RuntimeError):
        run_planned(dataclasses.replace(stage, work=stopped))
    assert _train(tmp_path, ["train.lr=0.0003"]).rebuilt == "train.lr 0.001 -> 0.0003"
