"""A shard set moved (or copied) to another folder is the same data: its manifest digest is unchanged. The VLM
fine-tune's fingerprint held `vlm.pairs`, the folder the pipeline points it at, so a pipeline rerun on the moved
set deleted the fine-tuned adapter and fine-tuned the VLM again (hours on a 7B model). The stages now fingerprint
what the data is (the shard set's digest), not where it lies."""
from __future__ import annotations

import shutil
from pathlib import Path

from mmlnb_dist.config import load_config
from mmlnb_dist.pipeline import PipelineInputs, run_pipeline, steps
from mmlnb_dist.pipeline.stages import StageResult
from support.shards import make_shard_set, write_described_patches


def _cfg(tmp_path, shards):
    return load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}", f"data.shards={shards}",
                                    f"vlm.pairs={shards}", "tracking.backends=[stdout]"])


def test_the_fine_tune_fingerprint_follows_the_shards_content_not_their_folder(tmp_path):
    cfg = _cfg(tmp_path, tmp_path / "a")
    here, moved = (StageResult("shards", Path(p), "digest-1", True, 0.0, {}, status="skipped")
                   for p in ("/data/shards", "/elsewhere/shards"))
    assert steps.plan_finetune_vlm(cfg, here).fingerprint == steps.plan_finetune_vlm(cfg, moved).fingerprint
    other = StageResult("shards", Path("/data/shards"), "digest-2", True, 0.0, {}, status="skipped")
    assert steps.plan_finetune_vlm(cfg, here).fingerprint != steps.plan_finetune_vlm(cfg, other).fingerprint


def _fine_tunes(monkeypatch):
    """The VLM fine-tune as a stand-in: the pairs folder of each fine-tune it was asked for."""
    fine_tunes = []

    def run_recipe(klass, cfg, env=None, report=None):
        fine_tunes.append(Path(cfg.vlm.pairs))
        (Path(cfg.run.dir) / "adapter").mkdir(parents=True)
        return {"adapter_dir": str(Path(cfg.run.dir) / "adapter"), "base_model": "tiny", "val/loss": 1.0}

    monkeypatch.setattr(steps, "run_recipe", run_recipe)
    return fine_tunes


def test_a_pipeline_on_a_moved_shard_set_keeps_its_fine_tuned_vlm(tmp_path, monkeypatch):
    shards = make_shard_set(tmp_path, per_class=4, test_fraction=0.2)
    fine_tunes = _fine_tunes(monkeypatch)
    first = run_pipeline(_cfg(tmp_path, shards), PipelineInputs(), last="finetune-vlm")
    assert first.stage("finetune-vlm").status == "ran" and fine_tunes == [shards]

    moved = tmp_path / "moved" / "shards"
    moved.parent.mkdir()
    shutil.move(str(shards), str(moved))
    again = run_pipeline(_cfg(tmp_path, moved), PipelineInputs(), last="finetune-vlm")
    assert again.stage("finetune-vlm").status == "skipped" and fine_tunes == [shards]
    assert again.stage("finetune-vlm").fingerprint == first.stage("finetune-vlm").fingerprint


def test_shards_built_by_the_pipeline_then_moved_keep_its_fine_tuned_vlm(tmp_path, monkeypatch):
    """The shard set the pipeline built from --patches, moved and given as data.shards, is the same data: the
    stages after it were fingerprinted by how it was built (the patches' files), so the VLM was fine-tuned again."""
    patches, shards = write_described_patches(tmp_path / "patches", per_class=6), tmp_path / "built"
    fine_tunes = _fine_tunes(monkeypatch)
    cfg = load_config("cpu-demo", [f"run.output_dir={tmp_path / 'runs'}", f"data.shards={shards}",
                                   "tracking.backends=[stdout]", "data.build.image_format=png",
                                   "data.build.image_size=24", "data.build.val_fraction=0.34",
                                   "data.build.test_fraction=0.0"])
    first = run_pipeline(cfg, PipelineInputs(patches=patches), last="finetune-vlm")
    assert first.stage("finetune-vlm").status == "ran" and fine_tunes == [shards]

    moved = tmp_path / "moved"
    shutil.move(str(shards), str(moved))
    cfg.data.shards = moved
    again = run_pipeline(cfg, PipelineInputs(), last="finetune-vlm")
    assert again.stage("finetune-vlm").status == "skipped" and fine_tunes == [shards]


def test_a_fine_tune_recorded_with_the_folder_in_its_fingerprint_is_kept(tmp_path):
    """An adapter fine-tuned before the fingerprint left out `vlm.pairs` is not rebuilt by the upgrade (nor are the
    describe and train stages whose fingerprints follow it) while its pairs stay where they were."""
    from mmlnb_dist.pipeline.stages import fingerprint, stage_file

    cfg = _cfg(tmp_path, tmp_path / "a")
    shards = StageResult("shards", tmp_path / "a", "digest-1", True, 0.0, {}, status="skipped")
    settings = {**cfg.vlm.model_dump(exclude=steps.FINETUNE_CADENCE | {"keep_best"}), "pairs": shards.output}
    before = fingerprint("finetune-vlm", "digest-1", cfg.run.seed, settings, cfg.distributed.results_dump())
    planned = steps.plan_finetune_vlm(cfg, shards)
    assert planned.fingerprint != before
    planned.output.mkdir(parents=True)
    stage_file(planned.output).write_text(f'{{"fingerprint": "{before}", "status": "done"}}')
    assert steps.plan_finetune_vlm(cfg, shards).fingerprint == before
    cache = tmp_path / "cache"
    (cache / "vlm" / before).mkdir(parents=True)
    stage_file(cache / "vlm" / before).write_text(f'{{"fingerprint": "{before}", "status": "done"}}')
    assert steps.plan_finetune_vlm(cfg, shards, cache_root=cache).output == cache / "vlm" / before


def test_an_interrupted_fine_tune_whose_pairs_moved_starts_again_instead_of_resuming(tmp_path):
    """Its run refuses a resume with another vlm.pairs (the stored config.yaml holds the old folder), so the stage
    is rebuilt, as it was before the fingerprint left the folder out; on the same folder it resumes."""
    import yaml

    from mmlnb_dist.pipeline.stages import stage_file

    cfg = _cfg(tmp_path, tmp_path / "a")
    moved = StageResult("shards", tmp_path / "moved", "digest-1", True, 0.0, {}, status="skipped")
    planned = steps.plan_finetune_vlm(cfg, moved)
    planned.output.mkdir(parents=True)
    for stored, resumes in ((tmp_path / "a", False), (tmp_path / "moved", True)):
        (planned.output / "config.yaml").write_text(yaml.safe_dump({"vlm": {"pairs": str(stored)}}))
        stage_file(planned.output).write_text(f'{{"fingerprint": "{planned.fingerprint}", "status": "running"}}')
        assert (steps.plan_finetune_vlm(cfg, moved).fingerprint == planned.fingerprint) is resumes, stored
    cache = tmp_path / "cache"  # a study's or a search's shared fine-tune
    shared = steps.plan_finetune_vlm(cfg, moved, cache_root=cache)
    shared.output.mkdir(parents=True)
    (shared.output / "config.yaml").write_text(yaml.safe_dump({"vlm": {"pairs": str(tmp_path / "a")}}))
    stage_file(shared.output).write_text(f'{{"fingerprint": "{shared.fingerprint}", "status": "running"}}')
    assert steps.plan_finetune_vlm(cfg, moved, cache_root=cache).output != shared.output


def test_an_interrupted_training_whose_shards_moved_starts_again_instead_of_resuming(tmp_path):
    """The same for the train stage: its recipe refuses a resume with another data.shards."""
    import yaml

    from mmlnb_dist.pipeline.stages import stage_file

    cfg = _cfg(tmp_path, tmp_path / "a")
    moved = StageResult("describe", tmp_path / "moved-described", "digest-1", True, 0.0, {}, status="skipped")
    planned = steps.plan_train(cfg, moved)
    planned.output.mkdir(parents=True)
    for stored, resumes in ((tmp_path / "a-described", False), (tmp_path / "moved-described", True)):
        (planned.output / "config.yaml").write_text(yaml.safe_dump({"data": {"shards": str(stored)}}))
        stage_file(planned.output).write_text(f'{{"fingerprint": "{planned.fingerprint}", "status": "running"}}')
        assert (steps.plan_train(cfg, moved).fingerprint == planned.fingerprint) is resumes, stored
    restarted = steps.plan_train(cfg, StageResult("describe", tmp_path / "x", "digest-1", True, 0.0, {}))
    stage_file(planned.output).write_text(f'{{"fingerprint": "{restarted.fingerprint}", "status": "done"}}')
    assert steps.plan_train(cfg, StageResult("describe", tmp_path / "x", "digest-1", True, 0.0, {})).fingerprint \
        == restarted.fingerprint  # once rebuilt there, it stays up to date
