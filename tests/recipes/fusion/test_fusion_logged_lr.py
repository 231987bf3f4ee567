"""`train/lr` at an optimizer step is the rate that step trained with. DeepSpeed's `engine.step()` advances the
schedule after the optimizer step, and the loop read the rate after it: the logged value was the NEXT step's (a
warmup run logged its first step at the second step's rate, and the last step of a cosine run at the floor)."""
from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.schedule import build_schedule, planned_group_lrs
from mmlnb_dist.core.sections import LRScheduleConfig
from mmlnb_dist.recipes.fusion import loop
from mmlnb_dist.recipes.fusion.config import CurriculumConfig
from mmlnb_dist.recipes.fusion.curriculum import CurriculumState

from support.engines import EpochLoader
from support.fusion_stand_ins import feature_batches, stand_in_fusion

CUR = CurriculumConfig(phases=[{"start_epoch": 0}])


class ScheduledEngine:
    """The engine surface the loop uses, stepping its schedule after the optimizer as DeepSpeed does; `used` holds
    the largest group rate each optimizer step trained with."""

    def __init__(self, model, schedule_cfg, total_steps):
        self.module = model
        self.opt = torch.optim.Adam(model.param_groups(), lr=1e-3)
        self.schedule = build_schedule(self.opt, schedule_cfg, total_steps)
        self.used = []

    def __call__(self, **inputs):
        return self.module(**inputs)

    def backward(self, loss):
        loss.backward()

    def step(self):
        self.used.append(max(g["lr"] for g in self.opt.param_groups))
        self.opt.step()
        self.opt.zero_grad()
        self.schedule.step()

    def train(self):
        self.module.train()

    def was_step_applied(self):
        return True


def _recipe(tmp_path, engine, batches):
    logged = []
    return SimpleNamespace(
        cfg=SimpleNamespace(run=SimpleNamespace(seed=0),
                            fusion=SimpleNamespace(curriculum=CUR, record_train_keys=False),
                            train=SimpleNamespace(checkpoint_every_steps=0, log_every=1)),
        env=DistEnv(), engine=SimpleNamespace(engine=engine, lr=lambda: max(engine.schedule.get_last_lr())),
        model=engine.module, plan=SimpleNamespace(accumulation=1), steps_per_epoch=len(batches),
        train_loader=EpochLoader(batches),
        phases=SimpleNamespace(enter=lambda epoch: 0, caches={"image": None, "text": None}, table=None),
        state=CurriculumState(), global_step=0, mid_epoch=None, run_dir=tmp_path, autocast=contextlib.nullcontext,
        watch=SimpleNamespace(see=lambda v: None, step_done=lambda *a: None),
        stop=SimpleNamespace(requested=False, stop_if_asked=lambda env, save, where: None),
        logger=SimpleNamespace(log_metrics=lambda metrics, step: logged.append((step, metrics["train/lr"]))),
        logged=logged)


def test_each_logged_rate_is_the_rate_its_step_trained_with(tmp_path):
    batches = feature_batches()
    epochs, total = 2, 2 * len(batches)
    schedule_cfg = LRScheduleConfig(name="cosine", warmup_ratio=0.34, min_lr_ratio=0.0)
    engine = ScheduledEngine(stand_in_fusion("prmf", 0.0, 0), schedule_cfg, total)
    recipe = _recipe(tmp_path, engine, batches)
    for epoch in range(epochs):
        loop.train_epoch(recipe, epoch)
    planned = planned_group_lrs(engine.schedule, total)["image_encoder, text_encoder, heads"]
    assert [step for step, _ in recipe.logged] == list(range(1, total + 1))
    assert [lr for _, lr in recipe.logged] == pytest.approx(engine.used, rel=1e-12)
    assert engine.used == pytest.approx(planned, rel=1e-12)  # the figure's curve, step for step


@pytest.mark.parametrize("mode, want", [("image_only", 1.0), ("text_only", 1.0), ("prmf", 0.3)])
def test_the_logged_lambda_is_the_fused_loss_weight_the_model_trains_with(tmp_path, mode, want):
    """A single-branch model has no image-only head: its loss is CE(fused) alone (docs/fusion.md), a fused-loss
    weight of 1, but its run logged (and drew) the curriculum's 0.3."""
    from mmlnb_dist.recipes.fusion.finish import curriculum_used

    batches = feature_batches()
    engine = ScheduledEngine(stand_in_fusion(mode, 0.0, 0), LRScheduleConfig(name="constant"), len(batches))
    recipe = _recipe(tmp_path, engine, batches)
    seen = []
    recipe.logger = SimpleNamespace(log_metrics=lambda metrics, step: seen.append(metrics["train/lambda"]))
    stats = loop.train_epoch(recipe, 0)
    assert CUR.start == 0.3 and stats["train/lambda"] == want and seen == [want] * len(batches)
    recipe.cfg.fusion.model = SimpleNamespace(mode=mode)
    recipe.history = [{"epoch": 1, "train/lambda": want}]  # epoch 0 not evaluated: its lambda is filled in
    assert curriculum_used(recipe)["lambdas"] == [want, want]
