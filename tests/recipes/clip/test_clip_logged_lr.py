"""`train/lr` at an optimizer step is the rate that step trained with. DeepSpeed's `engine.step()` advances the
schedule after the optimizer step, and the CLIP loop read the rate after it: the logged value was the NEXT step's
(the fusion recipe had the same defect, fixed in its loop). Checked on a real run with a warmup, where every step's
rate differs: the logged rates must follow the schedule's factors of steps 0, 1, 2, ... (not 1, 2, 3, ...)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlnb_dist.core.schedule import lr_factor

from support.clip import caption_shards, clip_config


def test_the_logged_rate_is_the_rate_each_step_trained_with(tmp_path):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    shards = caption_shards(tmp_path, n=48, size=32)
    cfg = clip_config(shards, tmp_path / "runs", "train.epochs=2", "train.global_batch_size=8", "train.log_every=1",
                      "train.lr_schedule.name=cosine", "train.lr_schedule.warmup_ratio=0.5", name="lr")
    result = run(recipe_class("clip"), cfg)
    records = [json.loads(line) for line in (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r["train/lr"] for r in records if "train/lr" in r}
    total = max(logged)
    assert sorted(logged) == list(range(1, total + 1)) and total >= 4
    factor = lr_factor(cfg.train.lr_schedule, total)
    first = logged[1] / factor(0)  # the peak rate, read off step 1
    for step, lr in logged.items():
        assert lr == pytest.approx(first * factor(step - 1), rel=1e-6), (step, lr)
