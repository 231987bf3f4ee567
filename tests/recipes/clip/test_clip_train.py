"""The CLIP recipe end to end on the CPU with tiny random towers: it learns (above chance), kill-and-resume gives
the weights of an uninterrupted run, the export rebuilds the model offline, a 2-process DeepSpeed run, and config
mistakes named before work starts."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch

from mmlnb_dist.core.tracking.server import free_port

from support.clip import CLIP_PROFILE, ROOT, VOCAB, caption_shards, clip_config
from support.processes import run_group

PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
EPOCHS = "train.epochs=6"


class Killed(KeyboardInterrupt):
    pass


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """96 image-caption pairs, 6 labels (3 seen in the image, 3 named in the caption): 72 train / 24 val."""
    return caption_shards(tmp_path_factory.mktemp("clip"), n=96, size=32)


def _epoch_steps(run_dir: Path) -> list:
    """(epoch, step of its train_epoch/ summary, step of its val record) per epoch, from the run's metrics.jsonl;
    asserts the steps never go back."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == sorted(steps), steps
    summaries = [r["step"] for r in records if "train_epoch/loss" in r]
    vals = [(int(r["epoch"]), r["step"]) for r in records if "val/loss" in r]
    assert len(summaries) == len(vals), (summaries, vals)
    return [(epoch, summary, step) for summary, (epoch, step) in zip(summaries, vals)]


@pytest.mark.slow
def test_clip_recipe_learns_and_a_killed_run_resumes_to_the_same_weights(shards, tmp_path):
    """Also: the validation metrics are logged at the optimizer step their epoch ended on (not at the epoch
    number), so MLflow draws them on the same x axis as the training curves."""
    from safetensors.torch import load_file

    from mmlnb_dist.core.checkpoint import fp32_state_dict_from_checkpoint
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class
    from mmlnb_dist.recipes.clip.export import load_exported_model

    recipe = recipe_class("clip")
    full_cfg = clip_config(shards, tmp_path / "full", EPOCHS)
    full = run(recipe, full_cfg)

    def kill_after_epoch_1(epoch, metrics):
        if epoch == 1:
            raise Killed()

    with pytest.raises(Killed):
        run(recipe, clip_config(shards, tmp_path / "killed", EPOCHS), report=kill_after_epoch_1)
    resumed = run(recipe, clip_config(shards, tmp_path / "killed", EPOCHS, "run.resume=true"))

    # exact resume: the last checkpoint and the export equal the uninterrupted run's, tensor by tensor
    _, a = fp32_state_dict_from_checkpoint(tmp_path / "full" / "clip" / "checkpoints", "epoch-0005")
    _, b = fp32_state_dict_from_checkpoint(tmp_path / "killed" / "clip" / "checkpoints", "epoch-0005")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ea = load_file(str(tmp_path / "full" / "clip" / "export" / "model.safetensors"))
    eb = load_file(str(tmp_path / "killed" / "clip" / "export" / "model.safetensors"))
    assert ea.keys() == eb.keys() and all(torch.equal(ea[k], eb[k]) for k in ea)
    assert resumed["val/micro_f1"] == full["val/micro_f1"] and resumed["best_epoch"] == full["best_epoch"]

    # one val record per epoch, at the step of that epoch's last training record: 72 train samples in global
    # batches of 16 (the last one short) are 5 optimizer steps an epoch; the resumed run logs the same steps
    steps_per_epoch = -(-72 // full_cfg.train.global_batch_size)
    expected = [(e, (e + 1) * steps_per_epoch, (e + 1) * steps_per_epoch) for e in range(6)]
    assert _epoch_steps(tmp_path / "full" / "clip") == expected
    assert _epoch_steps(tmp_path / "killed" / "clip") == expected

    # it learns: seed 0, 6 epochs; chance is micro AUROC 0.5 (measured: see docs/clip.md)
    assert full["val/num_samples"] == 24
    assert full["val/micro_auroc"] > 0.75, full
    assert full["val/micro_f1"] > 0.5, full

    # the export rebuilds the classifier offline and predicts what the best checkpoint predicts
    model, meta = load_exported_model(full["export_dir"])
    assert meta["classes"] == VOCAB and meta["top_k"] == 3
    with torch.no_grad():
        logits = model(pixel_values=torch.zeros(2, 3, 32, 32), **model.towers.tokenize(["a fat patch", "tissue"]))
    assert logits.shape == (2, len(VOCAB)) and torch.isfinite(logits).all()

    # frozen parameters never move: everything but the last 2 of 4 blocks per tower and the head keeps the
    # initial weights (rebuilt from the same seed), and the trained parts did change
    from mmlnb_dist.core.engine import seed_everything
    from mmlnb_dist.recipes.clip.model import build_model

    cfg = clip_config(shards, tmp_path / "init")
    seed_everything(cfg.run.seed)
    init = build_model(cfg.clip.model, len(VOCAB), 32).state_dict()
    assert init.keys() == ea.keys()
    trained = re.compile(r"^head\.|\.encoder\.layers\.[23]\.")
    moved = {k for k in init if not torch.equal(init[k], ea[k])}
    assert moved and all(trained.search(k) for k in moved), sorted(moved)
    assert {k.split(".layers.")[0] for k in moved if ".layers." in k} == {"towers.clip.vision_model.encoder",
                                                                          "towers.clip.text_model.encoder"}


@pytest.mark.parametrize("override, message", [
    (["clip.model.towers.unfreeze_blocks=5"], "clip.model.towers.unfreeze_blocks"),
    (["clip.top_k=7"], "clip.top_k"),
    (["clip.pos_weight=[1.0, 2.0]"], "clip.pos_weight"),
    (["clip.top_k=2", "train.best_metric=at_least_3_of_top_k"], "train.best_metric"),
    (["data.loader.image_size=36"], "data.loader.image_size"),
    (["tracking.register_name=clip-model"], "tracking.register_name"),
])
def test_config_mistakes_are_named_before_work_starts(shards, tmp_path, override, message):
    from mmlnb_dist.core.errors import ConfigError
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class

    with pytest.raises(ConfigError, match=message):
        run(recipe_class("clip"), clip_config(shards, tmp_path, *override))
    assert not (tmp_path / "clip" / "checkpoints").exists()


@pytest.mark.slow
def test_two_process_deepspeed_zero1_run_of_the_clip_recipe(shards, tmp_path):
    """torchrun, 2 CPU processes, gloo, ZeRO-1, through the CLI: every validation sample once, above chance."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "mmlnb_dist.cli", "train", "--config", str(CLIP_PROFILE), f"data.shards={shards}",
           f"run.output_dir={tmp_path}", "run.name=ds2", "distributed.zero_stage=1", "data.loader.num_workers=0",
           "data.loader.image_size=32", "tracking.backends=[stdout]", EPOCHS]
    proc = run_group(cmd, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads([line for line in proc.stdout.splitlines() if line.startswith("{")][-1])
    assert result["val/num_samples"] == 24  # exactly once across the 2 ranks
    assert json.loads((tmp_path / "ds2" / "metrics.json").read_text())["world_size"] == 2
    assert result["val/micro_auroc"] > 0.7, result
    ds = json.loads((tmp_path / "ds2" / "deepspeed_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == 1 and ds["gradient_clipping"] == 1.0
    assert (tmp_path / "ds2" / "export" / "model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["sum", "image_only", "text_only", "prmf"])
def test_other_fusions_and_single_tower_baselines_train_through_the_recipe(shards, tmp_path, fusion):
    """One epoch each: the recipe feeds only the towers the fusion uses and exports what it trained, and logs its
    planned learning-rate curve as every training stage does (docs/tracking.md), MLflow off included."""
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes import recipe_class
    from mmlnb_dist.recipes.clip.export import load_exported_model

    result = run(recipe_class("clip"), clip_config(shards, tmp_path, "train.epochs=1", f"clip.model.fusion={fusion}"))
    assert result["val/num_samples"] == 24 and result["val/loss"] == result["val/loss"]  # finite, not NaN
    model, meta = load_exported_model(result["export_dir"])
    assert meta["model"]["fusion"] == fusion and model.fusion == fusion
    lr_png = Path(result["run_dir"]) / "figures" / "lr_schedule.png"
    assert lr_png.is_file() and lr_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", sorted(lr_png.parent.iterdir())
