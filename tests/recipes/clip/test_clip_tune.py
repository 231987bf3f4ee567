"""The Tune driver runs the CLIP recipe with the shipped space (tune/spaces/clip.yaml) on the clip-multilabel
profile: two short trials, each a whole recipe run, the best config a ready-to-use full config."""
from __future__ import annotations

import pytest

from support.clip import ROOT, caption_shards, clip_config


@pytest.mark.slow
def test_two_trial_search_over_the_shipped_clip_space(tmp_path):
    import ray

    from mmlnb_dist.config import load_config
    from mmlnb_dist.tuning.driver import run_search

    shards = caption_shards(tmp_path, n=48, size=32)
    cfg = clip_config(shards, tmp_path / "runs", "tracking.backends=[mlflow]", "train.epochs=2",
                      "tune.use_ray_train=false", "tune.scheduler=fifo", "tune.num_samples=2", "tune.num_cpus=2")
    assert (cfg.tune.recipe, cfg.tune.metric, cfg.tune.mode) == ("clip", "val/micro_f1", "max")  # the profile's
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        summary = run_search(cfg, ROOT / "tune" / "spaces" / "clip.yaml")
    finally:
        ray.shutdown()
    assert summary["trials"] == 2 and summary["errored"] == 0, summary
    best = load_config(summary["best_config"])
    assert best.train.recipe == "clip"
    assert best.clip.model.towers.unfreeze_blocks == summary["best_params"]["clip.model.towers.unfreeze_blocks"]
