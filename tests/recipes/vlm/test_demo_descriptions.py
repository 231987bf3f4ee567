"""The embedded default's VLM writes varied descriptions that name the class of patches from slides it never saw:
the cpu-demo profile's synthetic set, split, fine-tuning and generation settings, run through the real recipe and
`describe`, judged by the describe quality report (`recipes/vlm/quality.py`).

Thresholds (issue 13, item 4): at least 50 distinct descriptions over the 600 demo patches and a class-naming rate
of at least 0.8 on the test split (4 slides per class, none of them seen in fine-tuning). Before: greedy decoding
wrote 3 distinct descriptions (repeated 100%) and named the class of 0.25 of the test patches (one slide each);
with 60 slides, 112 px images and 5 epochs still 3 distinct and 0.33 (the model writes one D-like text for all)."""
from __future__ import annotations

import json

import pytest


@pytest.mark.slow
@pytest.mark.skip(reason="issue 13 item 4 target not met yet: the tiny VLM ignores the image (measured on the demo "
                         "set's 120 test patches: greedy 3 distinct, naming 0.33 = majority share; seeded sampling "
                         "gives variety, not class information). Unskip when the VLM reads the image.")
def test_demo_vlm_descriptions_are_varied_and_name_the_class(tmp_path):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.collect import collect_samples
    from mmlnb_dist.data.synthetic import make_synthetic_dataset
    from mmlnb_dist.recipes.vlm.describe import run_describe
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe

    cfg = load_config("cpu-demo", [
        f"run.output_dir={tmp_path / 'runs'}", "run.name=demo-vlm", f"vlm.cache_dir={tmp_path / 'cache'}",
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
    assert report["distinct"] >= 50, report
    assert report["class_naming"]["by_split"]["test"] >= 0.8, report["class_naming"]
