"""Which descriptions a study's rows read (`studies.descriptions.prepare_descriptions`), with the VLM stages replaced
by stand-ins that record what they were given: the fine-tuned source is described by the fine-tuned VLM and the
base source by the base VLM, each in its own run under the study's cache, as a child of the study's parent run;
only the sets generated now count as computed; and `cache_counts` reuses: every run of a source but the first
one when that source was generated now."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest


@pytest.fixture
def stages(monkeypatch):
    from mmlnb_dist.studies import descriptions

    calls, state = [], {"finetune_skipped": False}

    def finetune(cfg, shards, env, cache_root=None):
        calls.append(("finetune", cfg.run.name, Path(cfg.run.output_dir), cfg.run.resume, cfg.tracking.parent_run_id))
        return SimpleNamespace(name="adapter", skipped=state["finetune_skipped"])

    def base(cfg):
        calls.append(("base", cfg.run.name))
        return SimpleNamespace(name="no-adapter", skipped=True)

    def describe(cfg, vlm, shards, env, cache_root=None):
        calls.append(("describe", cfg.run.name, vlm.name))
        # the base set was described by an earlier call (up to date); the fine-tuned one is generated now
        return SimpleNamespace(output=Path(cache_root) / f"described-{vlm.name}", fingerprint=f"fp-{vlm.name}",
                               skipped=vlm.name == "no-adapter")

    monkeypatch.setattr(descriptions, "stage_finetune_vlm", finetune)
    monkeypatch.setattr(descriptions, "base_vlm_stage", base)
    monkeypatch.setattr(descriptions, "stage_describe", describe)
    monkeypatch.setattr(descriptions, "existing_shards", lambda path: SimpleNamespace(fingerprint="fp-shards"))
    return calls, state


def test_each_source_is_described_by_its_own_vlm_and_only_new_sets_count_as_computed(stages, tmp_path):
    """Guards prepare_descriptions: the VLM behind each source, `computed`, `vlm_finetuned`, the stage runs."""
    from mmlnb_dist.config import load_config
    from mmlnb_dist.studies.descriptions import prepare_descriptions

    from support.fusion import CPU_DEMO

    calls, state = stages
    # the study resumes (run.resume=true): the description stages still start as stages, not as resumed runs
    cfg = load_config(CPU_DEMO, [f"run.output_dir={tmp_path}", f"data.shards={tmp_path / 'shards'}",
                                 "run.resume=true"])
    study = tmp_path / "study"
    sets = prepare_descriptions(cfg, {"base_vlm", "fine_tuned_vlm", "shards"}, study, "parent-1", "sqlite:///x")
    assert sets.paths == {"shards": tmp_path / "shards", "fine_tuned_vlm": study / "cache" / "described-adapter",
                          "base_vlm": study / "cache" / "described-no-adapter"}
    assert sets.fingerprints["fine_tuned_vlm"] == "fp-adapter" and sets.fingerprints["shards"] == "fp-shards"
    assert sets.computed == ["fine_tuned_vlm"] and sets.vlm_finetuned is True
    assert ("finetune", "fine_tuned_vlm", study / "cache" / "runs", False, "parent-1") in calls
    assert ("describe", "fine_tuned_vlm", "adapter") in calls and ("describe", "base_vlm", "no-adapter") in calls
    assert sets.summary()["base_vlm"]["computed_now"] is False
    only_shards = prepare_descriptions(cfg, {"shards"}, study)
    assert list(only_shards.paths) == ["shards"] and only_shards.vlm_finetuned is None
    state["finetune_skipped"] = True  # the fine-tuned adapter found up to date in the study cache
    assert prepare_descriptions(cfg, {"fine_tuned_vlm"}, study).vlm_finetuned is False


def test_cache_counts_count_every_run_but_the_first_of_a_set_generated_now_as_a_reuse():
    """Guards cache_counts: description hits and misses, feature cache sums, up-to-date runs use nothing."""
    from mmlnb_dist.studies import RowJob, cache_counts
    from mmlnb_dist.studies.descriptions import DescriptionSets

    texts = DescriptionSets(paths={"fine_tuned_vlm": Path("a"), "base_vlm": Path("b")},
                            fingerprints={"fine_tuned_vlm": "1", "base_vlm": "2"}, computed=["fine_tuned_vlm"],
                            vlm_finetuned=True)
    sources = {"full": "fine_tuned_vlm", "concat": "fine_tuned_vlm", "no_fine_tune": "base_vlm"}
    jobs = {f"{r}-seed{s}": RowJob(r, s, None, "") for r in sources for s in (0, 1)}
    infos = {name: {"skipped": False, "feature_cache": {"hits": 1, "misses": 2}} for name in jobs}
    infos["concat-seed1"] = {"skipped": True, "feature_cache": {"hits": 10, "misses": 10}}
    got = cache_counts(texts, sources, jobs, infos)
    # fine-tuned: 3 trained runs, generated now -> 2 reuses; base: 2 runs on a set found up to date -> 2 reuses
    assert (got["runs_trained"], got["runs_up_to_date"]) == (5, 1)
    assert (got["description_misses"], got["description_hits"]) == (1, 4)
    assert (got["feature_hits"], got["feature_misses"]) == (5, 10)
    assert got["vlm_finetuned"] is True
