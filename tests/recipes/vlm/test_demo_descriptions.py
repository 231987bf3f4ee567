"""The embedded default's VLM writes varied descriptions that name the class of patches from slides it never saw:
the cpu-demo profile's synthetic set, split, base model, fine-tuning and generation settings, run through the real
recipe and `describe`, judged by the describe quality report (`recipes/vlm/quality.py`).

Issue 13's targets: a class-naming rate of at least 0.8 on the test split and at least 50 distinct descriptions over
the 600 patches. Measured with the profile (2026-12-03): 0.93-0.96 on test (4 slides per class, none seen in
fine-tuning) and 83-85 distinct, with the tiny model's vision tower distilled from EfficientNet-Lite0 and the
authors' sampling at temperature 0.5. Before (random tower, greedy): 0.83 and 5 distinct; the random tower's
tokens carry the class at 0.82 for a linear probe, the distilled tower's at 0.99 (docs/vlm.md)."""
from __future__ import annotations

import json

import pytest

NAMING_TEST = 0.8
"""Class-naming rate on the test split (a generator that ignores the image: at most the majority share, 1/3)."""
DISTINCT = 50
"""Distinct descriptions over the 600 patches (one text per class would be 3)."""


@pytest.mark.slow
def test_demo_vlm_descriptions_are_varied_and_name_the_class(tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.synthetic import make_synthetic_dataset
    from mmlnb_dist.recipes.vlm.describe import run_describe
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    cfg = load_config("cpu-demo", [
        f"run.output_dir={tmp_path / 'runs'}", "run.name=demo-vlm",
        f"vlm.pairs={tmp_path / 'shards'}", f"data.shards={tmp_path / 'shards'}", "tracking.backends=[stdout]"])
    s = cfg.data.synth
    make_synthetic_dataset(tmp_path / "src", n=s.n, size=s.size, n_slides=s.n_slides,
                           noisy_description_rate=s.noisy_description_rate, seed=s.seed)
    build_shards(collect_samples(tmp_path / "src", cfg.data.classes), tmp_path / "shards", cfg.data.build,
                 cfg.data.classes, progress=False)
    result = run(FinetuneVLMRecipe, cfg)
    described = run_describe(cfg, adapter=result["adapter_dir"], out=tmp_path / "described", progress=False)
    report = described["quality"]
    print(json.dumps(report, indent=1))
    assert report["n"] == s.n
    assert report["distinct"] >= DISTINCT, report
    assert report["class_naming"]["by_split"]["test"] >= NAMING_TEST, report["class_naming"]
