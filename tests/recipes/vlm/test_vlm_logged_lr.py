"""`train/lr` at a fine-tuning step is the rate that step trained with. DeepSpeed's `engine.step()` advances the
schedule after the optimizer step, and the loop read the rate after it: the logged value was the NEXT step's (a
warmup logged its first step at the second step's rate). Checked on a real tiny fine-tune with a warmup, where every
step's rate differs: the logged rates follow the schedule's factors of steps 0, 1, 2, ... (not 1, 2, 3, ...)."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.core.schedule import lr_factor
from mmlnb_dist.core.sections import LRScheduleConfig

from support.cli import run_cli
from support.vlm import ROOT, make_pairs

PIX = 56 * 56
PROFILE = str(ROOT / "launch" / "profiles" / "cpu-demo.yaml")
STEPS = 4


def test_the_logged_rate_is_the_rate_each_step_trained_with(tmp_path, cache):
    pairs = make_pairs(tmp_path / "pairs", n=8)
    runs = tmp_path / "runs"
    code, _, err = run_cli(["finetune-vlm", "--config", PROFILE, f"vlm.pairs={pairs}", f"run.output_dir={runs}",
                            "run.name=lr", "tracking.backends=[stdout]", f"vlm.cache_dir={cache}",
                            "vlm.tiny_vision=random", f"vlm.min_pixels={PIX}", f"vlm.max_pixels={PIX}",
                            "vlm.global_batch_size=2", f"vlm.max_steps={STEPS}", "vlm.log_every=1",
                            "vlm.eval_every=100", "vlm.lr_schedule.name=cosine", "vlm.lr_schedule.warmup_ratio=0.5"])
    assert code == 0, err[-2000:]
    records = [json.loads(line) for line in (runs / "lr" / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r["train/lr"] for r in records if "train/lr" in r}
    assert sorted(logged) == list(range(1, STEPS + 1))
    factor = lr_factor(LRScheduleConfig(name="cosine", warmup_ratio=0.5), STEPS)
    first = logged[1] / factor(0)  # the peak rate, read off step 1
    for step, lr in logged.items():
        assert lr == pytest.approx(first * factor(step - 1), rel=1e-6), (step, lr)
