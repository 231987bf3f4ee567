"""What the VLM stages are fingerprinted with decides whether a pipeline rerun reuses, resumes or rebuilds them:
- with `vlm.finetune=false` the base VLM's fingerprint held only its identity, so a rerun at another image
  resolution (`vlm.min_pixels`/`max_pixels`) or precision reused the old descriptions and skipped training
  (`ablate` and Tune trials shared the stale set the same way);
- the fine-tune's held its logging and checkpoint cadence, so a user who reran a killed 7B fine-tune with
  `vlm.checkpoint_every=25` (to checkpoint more often) had it deleted and started again from step 0;
- a `vlm-fusion` trial with `vlm.finetune=false` trained its classifier and then failed on `KeyError: 'losses'`."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.pipeline import steps
from mmlnb_dist.pipeline.stages import StageResult


def _cfg(*overrides):
    return load_config("rtx4090", list(overrides))


def _finetune_fp(*overrides):
    return steps.plan_finetune_vlm(_cfg(*overrides), SHARDS).fingerprint


SHARDS = StageResult("shards", Path("/data/shards"), "fp-shards", True, 0.0, {}, status="skipped")


@pytest.mark.parametrize("change", ["vlm.min_pixels=50176", "vlm.max_pixels=200704", "distributed.precision=fp32",
                                    "vlm.tiny_seed=3"])
def test_the_base_vlm_stage_changes_with_what_changes_its_descriptions(change):
    assert steps.base_vlm_stage(_cfg(change)).fingerprint != steps.base_vlm_stage(_cfg()).fingerprint
    base, changed = (steps.plan_describe(_cfg(*c), steps.base_vlm_stage(_cfg(*c)), SHARDS).fingerprint
                     for c in ([], [change]))
    assert base != changed


@pytest.mark.parametrize("cadence", ["vlm.log_every=1", "vlm.eval_every=100", "vlm.checkpoint_every=25",
                                     "vlm.cache_dir=/elsewhere"])
def test_a_fine_tune_keeps_its_fingerprint_when_only_its_cadence_changes(cadence):
    assert _finetune_fp(cadence) == _finetune_fp()


@pytest.mark.parametrize("change", ["vlm.lora.r=8", "vlm.epochs=6", "vlm.min_pixels=50176", "run.seed=1"])
def test_a_fine_tune_is_rebuilt_when_what_it_learns_changes(change):
    assert _finetune_fp(change) != _finetune_fp()


def test_a_vlm_fusion_trial_with_the_base_vlm_reports_no_vlm_loss(tmp_path, monkeypatch):
    from mmlnb_dist import pipeline
    from mmlnb_dist.pipeline import flow

    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path}", "vlm.finetune=false"])
    monkeypatch.setattr(flow, "existing_shards", lambda path: SHARDS)
    monkeypatch.setattr(steps, "stage_describe", lambda *a, **k: StageResult(
        "describe", tmp_path / "described", "fp-d", True, 0.0, {}, status="skipped"))
    monkeypatch.setattr(steps, "run_recipe", lambda *a, **k: {"val/balanced_accuracy": 0.5})
    result = pipeline.run_vlm_fusion(cfg)
    assert result["val/balanced_accuracy"] == 0.5 and result["vlm/val_loss"] is None


def _describe(tmp_path, *overrides, cache_root=None):
    cfg = _cfg(f"run.output_dir={tmp_path}", *overrides)
    return steps.plan_describe(cfg, steps.base_vlm_stage(cfg), StageResult(
        "shards", tmp_path / "shards", "fp-shards", True, 0.0, {}, status="skipped"), cache_root=cache_root)


@pytest.mark.parametrize("cached", [False, True])
def test_a_describe_stopped_for_memory_continues_with_a_smaller_batch(tmp_path, cached):
    """Out of memory, the pipeline names `vlm.generation.batch_size`; a rerun with a smaller one must continue the
    stopped describe (a description does not depend on its batch: `describe` itself resumes across batch sizes),
    not describe every patch again from the first."""
    import dataclasses
    import json

    from mmlnb_dist.pipeline.stages import run_planned, stage_file

    cache = tmp_path / "cache" if cached else None
    stopped = _describe(tmp_path, "vlm.generation.batch_size=8", cache_root=cache)
    stopped.output.mkdir(parents=True)
    (stopped.output / "shard-000000.tar").write_bytes(b"half of the work")
    stage_file(stopped.output).write_text(json.dumps({"fingerprint": stopped.fingerprint, "status": "running"}))
    calls = []
    smaller = dataclasses.replace(_describe(tmp_path, "vlm.generation.batch_size=2", cache_root=cache),
                                  work=lambda resume: calls.append(resume) or {})
    run_planned(smaller)
    assert smaller.output == stopped.output and calls == [True]
    assert (stopped.output / "shard-000000.tar").read_bytes() == b"half of the work"


def test_a_describe_done_before_the_batch_size_left_its_fingerprint_is_kept(tmp_path):
    """A describe recorded while the fingerprint held `vlm.generation.batch_size` is up to date after the upgrade."""
    import json

    from mmlnb_dist.pipeline import stages

    plan = _describe(tmp_path)
    cfg = _cfg(f"run.output_dir={tmp_path}")
    old = stages.fingerprint("describe", steps.base_vlm_stage(cfg).fingerprint, "fp-shards", cfg.vlm.prompt,
                             cfg.vlm.generation.model_dump())
    plan.output.mkdir(parents=True)
    stages.stage_file(plan.output).write_text(json.dumps({"fingerprint": old, "status": "done"}))
    assert _describe(tmp_path).fingerprint == old
