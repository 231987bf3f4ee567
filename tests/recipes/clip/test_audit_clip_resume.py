"""Audit of the CLIP recipe's resume (recipes/clip/recipe.py setup): the state a checkpoint's client holds comes
back as the recipe's (the optimizer step that logging and step tags continue from, the best checkpoint, the
history, the next epoch); the checkpoint's loading itself is stood in for (core.checkpoint has its own tests)."""
from __future__ import annotations

from support.clip import caption_shards, clip_config

CLIENT = {"best": {"tag": "epoch-0001", "epoch": 1, "metric": "micro_f1", "value": 0.625}, "global_step": 17,
          "history": [{"epoch": 0, "val/micro_f1": 0.5}, {"epoch": 1, "val/micro_f1": 0.625}],
          "data_position": {"next_epoch": 2, "granularity": "epoch"}, "tag": "epoch-0001"}


def test_setup_with_resume_continues_from_the_checkpoints_state(tmp_path, monkeypatch):
    from mmlnb_dist.core.checkpoint import CheckpointManager
    from mmlnb_dist.core.distributed import DistEnv, init_engine_process_group
    from mmlnb_dist.recipes.clip.recipe import ClipRecipe

    asked = []
    monkeypatch.setattr(CheckpointManager, "resume", lambda self, engine, resume, strict=True: (
        asked.append(resume), dict(CLIENT) if resume else {})[1])
    shards = caption_shards(tmp_path, n=16, size=32)
    cfg = clip_config(shards, tmp_path / "runs", "run.resume=true", "train.epochs=4",
                      "clip.model.towers.tiny.layers=2", "clip.model.head_dropout=0.0")
    env = DistEnv.from_environment()
    init_engine_process_group(env, cfg.distributed)
    recipe = ClipRecipe(cfg, env)
    recipe.setup()
    try:
        assert asked == [True]
        assert recipe.global_step == 17 and recipe.start_epoch == 2 and recipe.mid_epoch is None
        assert recipe.best == CLIENT["best"] and recipe.history == CLIENT["history"]
        assert recipe.is_better(0.7) and not recipe.is_better(0.6)  # against the restored best
    finally:
        recipe.cleanup()
