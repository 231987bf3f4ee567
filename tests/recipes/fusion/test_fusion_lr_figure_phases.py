"""The run's lr_schedule.png shows each branch at the rate it trained at: a curriculum phase that freezes an encoder
gives its group a learning rate of 0 (`GroupSchedule`), but the figure drew every group at its scheduled rate, so a
branch frozen for some epochs looked as if it was learning."""
from __future__ import annotations


import pytest
import torch

from mmlnb_dist.core.distributed import DistEnv
from mmlnb_dist.core.schedule import build_schedule, schedule_figure
from mmlnb_dist.core.sections import LRScheduleConfig
from mmlnb_dist.recipes.fusion.phases import PhaseController, planned_phase_lrs

from support.fusion import tiny_config

PHASES = ("fusion.curriculum.phases=[{start_epoch: 0, train_text_encoder: false}, {start_epoch: 2},"
          " {start_epoch: 3, train_image_encoder: false, train_text_encoder: false}]")


def _model():
    from mmlnb_dist.recipes.fusion.model import build_classifier

    cfg = tiny_config("/nowhere", "/nowhere", "lr")
    torch.manual_seed(0)
    return build_classifier(cfg.fusion.model, 3)


def _run_rates(cfg, model, epochs, steps_per_epoch, schedule_cfg):
    """The rate of every group at every optimizer step as training sets it: the phase entered at each epoch's
    start (`PhaseController.enter`, as `loop.train_epoch` does), the optimizer stepped, then the schedule."""
    opt = torch.optim.Adam(model.param_groups(), lr=1e-3)
    schedule = build_schedule(opt, schedule_cfg, epochs * steps_per_epoch)
    controller = PhaseController(cfg, model, schedule, None, DistEnv(), None)
    seen = {g["name"]: [] for g in opt.param_groups}
    for epoch in range(epochs):
        controller.enter(epoch)
        for _ in range(steps_per_epoch):
            for g in opt.param_groups:
                seen[g["name"]].append(g["lr"])
            opt.step()
            schedule.step()
    return schedule, seen


@pytest.mark.parametrize("schedule_cfg", [LRScheduleConfig(name="constant"),
                                          LRScheduleConfig(name="cosine", warmup_ratio=0.2, min_lr_ratio=0.1)])
def test_the_planned_rates_are_zero_while_a_phase_freezes_the_group(schedule_cfg):
    cfg = tiny_config("/nowhere", "/nowhere", "lr", [PHASES, "train.epochs=4",
                                                    "fusion.cache_frozen_features=false"])
    model = _model()
    epochs, per_epoch = 4, 3
    schedule, seen = _run_rates(cfg, model, epochs, per_epoch, schedule_cfg)
    planned = planned_phase_lrs(schedule, cfg.fusion.curriculum, model, per_epoch, epochs * per_epoch)
    by_group = {name: values for names, values in planned.items() for name in names.split(", ")}
    assert sorted(by_group) == ["heads", "image_encoder", "text_encoder"]
    for name in by_group:
        assert by_group[name] == pytest.approx(seen[name], rel=1e-12, abs=0), name
    # text frozen in epochs 0-1, both encoders in epoch 3: three curves, the frozen spans at exactly 0
    assert len(planned) == 3
    assert by_group["text_encoder"][:6] == [0.0] * 6 and by_group["text_encoder"][6] > 0
    assert by_group["image_encoder"][9:] == [0.0] * 3 and min(by_group["image_encoder"][:9]) > 0
    assert min(by_group["heads"]) > 0
    lines = schedule_figure(planned).axes[0].lines
    drawn = {line.get_label().split(" (peak")[0]: list(line.get_ydata()) for line in lines}
    assert drawn["text_encoder"][:6] == [0.0] * 6


def test_a_curriculum_that_never_freezes_draws_one_curve():
    cfg = tiny_config("/nowhere", "/nowhere", "lr", ["fusion.curriculum.phases=[{start_epoch: 0}]", "train.epochs=2",
                                                    "fusion.cache_frozen_features=false"])
    model = _model()
    schedule, seen = _run_rates(cfg, model, 2, 2, LRScheduleConfig(name="constant"))
    planned = planned_phase_lrs(schedule, cfg.fusion.curriculum, model, 2, 4)
    assert planned == {"image_encoder, text_encoder, heads": pytest.approx(seen["heads"])}


def test_the_figure_holds_each_rate_over_its_step():
    """A freeze that starts at a phase boundary is a jump to 0, not a ramp across the step before it."""
    line = schedule_figure({"text_encoder": [0.0, 1e-3, 1e-3, 0.0]}).axes[0].lines[0]
    assert line.get_drawstyle() == "steps-post"
    assert list(line.get_ydata()) == [0.0, 1e-3, 1e-3, 0.0]


def test_the_figure_counts_steps_as_the_run_logs_them():
    """Step k of metrics.jsonl (global_step, from 1) trained at the plan's value k-1: the figure drew that value at
    x = k-1, one step left of where train/lr puts it."""
    line = schedule_figure({"heads": [5e-4, 1e-3, 1e-3]}).axes[0].lines[0]
    assert list(line.get_xdata()) == [1, 2, 3]


def test_curves_that_coincide_over_a_span_stay_visible():
    """The image encoder trains at the heads' rate until a phase freezes it: drawn alike, the later curve hid the
    earlier one wherever they coincide."""
    lines = schedule_figure({"image_encoder": [1e-3, 1e-3, 0.0], "text_encoder": [0.0, 1e-3, 0.0],
                             "heads": [1e-3, 1e-3, 1e-3]}).axes[0].lines
    styles = [(line.get_linestyle(), line.get_linewidth()) for line in lines]
    assert len(set(styles)) == 3
    widths = [width for _, width in styles]
    assert widths == sorted(widths, reverse=True)  # the first drawn is the widest: it shows around the later ones
