"""A CLIP run stopped by a SIGTERM (a preemption) resumes with step checkpoints turned on: how often a run saves
changes no weight, so `train.checkpoint_every_steps` may change on a resume, like `train.checkpoint_every` and
retention. It was refused ("train.checkpoint_every_steps: 0 -> 2 ... continuing it would mix two results"): a user
preempted once could not ask for checkpoints every N steps without starting over."""
from __future__ import annotations

import json
import signal
import threading

import pytest

from support.clip import caption_shards, clip_config

ARGS = ("train.epochs=2", "train.global_batch_size=8", "train.log_every=1", "train.keep_checkpoints=20",
        "data.loader.augment=false")


def test_a_resume_may_turn_on_step_checkpoints_and_ends_with_the_uninterrupted_weights(tmp_path, monkeypatch):
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.core.signals import Terminated
    from mmlnb_dist.core.tracking import loggers
    from mmlnb_dist.recipes import recipe_class

    shards = caption_shards(tmp_path, n=32, size=32)
    reference = run(recipe_class("clip"), clip_config(shards, tmp_path, *ARGS, name="ref"))
    log_metrics = loggers.MultiLogger.log_metrics

    def log_then_stop(self, metrics, step=None):  # a SIGTERM inside epoch 1 (3 steps per epoch)
        log_metrics(self, metrics, step=step)
        if step == 4 and "train/loss" in metrics:
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

    monkeypatch.setattr(loggers.MultiLogger, "log_metrics", log_then_stop)
    with pytest.raises(Terminated):
        run(recipe_class("clip"), clip_config(shards, tmp_path, *ARGS, name="r"))
    monkeypatch.undo()
    assert (tmp_path / "r" / "checkpoints" / "latest").read_text() == "step-000004"

    resumed = run(recipe_class("clip"), clip_config(shards, tmp_path, *ARGS, "run.resume=true",
                                                    "train.checkpoint_every_steps=2", name="r"))
    changes = json.loads((tmp_path / "r" / "resume_changes.json").read_text())["resumes"]
    assert changes[-1]["changed"] == {"train.checkpoint_every_steps": [0, 2]}
    assert resumed["val/micro_f1"] == reference["val/micro_f1"]
    assert (tmp_path / "r" / "export" / "model.safetensors").read_bytes() == \
        (tmp_path / "ref" / "export" / "model.safetensors").read_bytes()
