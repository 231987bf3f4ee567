"""The fusion training epoch: micro batches -> optimizer steps, mid-epoch checkpoints that record the data position
(`train.checkpoint_every_steps`, or a SIGTERM), and continuing an epoch from one (see `recipes.epochs`).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

import torch

from ...core.checkpoint import step_tag
from ...core.distributed import all_reduce_sum
from ...core.engine import seed_everything
from ...core.errors import ConfigError
from ...core.progress import progress_bar
from ..epochs import MidEpochResume, mid_epoch_state, restore_rng
from .curriculum import curriculum_loss, trained_lambda
from .steps import prepare_inputs

if TYPE_CHECKING:
    from .recipe import FusionRecipe

log = logging.getLogger(__name__)


class KeyRecorder:
    """`fusion.record_train_keys`: one JSON line per trained micro batch in `<run dir>/train_keys/rank-<r>.jsonl`
    (flushed at once, so a killed run's file holds exactly what it trained on)."""

    def __init__(self, run_dir: Path, rank: int, world_size: int):
        folder = Path(run_dir) / "train_keys"
        folder.mkdir(parents=True, exist_ok=True)
        self.file = open(folder / f"rank-{rank}.jsonl", "a", encoding="utf-8")
        self.rank, self.world_size = rank, world_size

    def write(self, epoch: int, step: int, keys: List[str]) -> None:
        self.file.write(json.dumps({"epoch": epoch, "step": step, "rank": self.rank, "world_size": self.world_size,
                                    "keys": list(keys)}) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def epoch_batches(recipe: "FusionRecipe", epoch: int,
                  resume: Optional[MidEpochResume]) -> Tuple[Iterator[Dict[str, Any]], int, Any]:
    """(iterator of micro batches, count, the loader whose data position a checkpoint records). The count is the
    same on every rank and a multiple of the gradient accumulation, so every optimizer step is complete and no rank
    waits on another. A resumed epoch yields only what is left of it."""
    acc = recipe.plan.accumulation
    table = recipe.phases.table
    loader = table.order if table is not None else recipe.train_loader
    loader.set_epoch(epoch)
    loader.resume_from(resume.position if resume is not None else None)
    n = (len(loader) // acc) * acc
    if table is not None:
        done = resume.position.step_in_epoch if resume is not None else 0
        n = min(n, (recipe.steps_per_epoch - done) * acc)
        return table.batches(epoch=epoch, num_micro_batches=n), n, loader
    if n == 0 and resume is None:
        raise too_few_micro_batches(len(loader), acc)
    return iter(loader), n, loader


def too_few_micro_batches(micro_batches: int, accumulation: int) -> ConfigError:
    """An epoch too short for one optimizer step (the recipe's setup says it before any work, the loop again)."""
    return ConfigError(f"train.global_batch_size: an epoch has {micro_batches} micro batches per rank, fewer than "
                       f"the gradient accumulation {accumulation}; lower the global batch")


def train_epoch(recipe: "FusionRecipe", epoch: int) -> Dict[str, float]:
    """Train one epoch (or what is left of it after a mid-epoch checkpoint); returns its statistics."""
    cfg, env, engine = recipe.cfg, recipe.env, recipe.engine.engine
    resume = recipe.mid_epoch if recipe.mid_epoch is not None and recipe.mid_epoch.position.epoch == epoch else None
    recipe.state.phase = recipe.phases.enter(epoch)
    # Derived per-epoch seed (dropout etc.): a resumed run replays an epoch exactly without relying on where the
    # RNG stood when the previous process died. A mid-epoch resume restores the saved state instead (below).
    seed_everything(cfg.run.seed * 100_003 + epoch * 101 + env.rank)
    lam = trained_lambda(cfg.fusion.curriculum, epoch, two_branch=recipe.model.image_head is not None)
    recipe.state.epoch = epoch
    engine.train()
    batches, n, loader = epoch_batches(recipe, epoch, resume)
    done = resume.position.step_in_epoch if resume is not None else 0
    steps_this_epoch = done + n // recipe.plan.accumulation
    # loss*n, n, alpha sum, alpha count
    sums = resume.epoch_sums(env, 4) if resume is not None else torch.zeros(4, dtype=torch.float64)
    recorder = KeyRecorder(recipe.run_dir, env.rank, env.world_size) if cfg.fusion.record_train_keys else None
    bar = progress_bar(total=n, desc=f"epoch {epoch}", enabled=env.is_main, leave=False, dynamic_ncols=True)
    t0 = time.perf_counter()
    seen = 0
    step_in_epoch = done
    for i, batch in zip(range(n), batches):
        if i == 0 and resume is not None:
            restore_rng(resume, env, cfg.run.seed, epoch)  # after the first fetch (starting the reader draws from it)
        if recorder is not None:
            recorder.write(epoch, recipe.global_step + 1, batch["key"])
        label = batch["label"].to(env.device)
        inputs = prepare_inputs(recipe.model, batch, recipe.phases.caches, env.device)
        with recipe.autocast():
            out = engine(**inputs)
            loss = curriculum_loss(out["logits"], out["image_logits"], label, lam)
        engine.backward(loss)
        lr = recipe.engine.lr()  # the rate this step trains at: DeepSpeed's step advances the schedule after it
        engine.step()
        b = label.numel()
        seen += b
        loss_value = float(loss.detach())
        recipe.watch.see(loss_value)
        sums[0] += loss_value * b
        sums[1] += b
        if out["alpha"] is not None:
            sums[2] += float(out["alpha"].detach().float().sum())
            sums[3] += out["alpha"].numel()
        if (i + 1) % recipe.plan.accumulation == 0:
            recipe.global_step += 1
            step_in_epoch += 1
            every = cfg.train.checkpoint_every_steps
            periodic = bool(every) and recipe.global_step % every == 0 and step_in_epoch < steps_this_epoch
            # the weights are read when this step is saved: periodically, by a SIGTERM, or at the epoch's end
            saved = periodic or recipe.stop.requested or step_in_epoch == steps_this_epoch
            recipe.watch.step_done(engine.was_step_applied(), f"at step {step_in_epoch} of epoch {epoch} "
                                   f"(optimizer step {recipe.global_step})", engine.module if saved else None)
            rate = seen * env.world_size / max(time.perf_counter() - t0, 1e-9)
            alpha = float(sums[2] / sums[3]) if sums[3] else float("nan")
            bar.set_postfix(loss=f"{loss_value:.3f}", lam=f"{lam:.2f}", alpha=f"{alpha:.2f}", sps=f"{rate:.0f}")
            if recipe.global_step % cfg.train.log_every == 0:
                recipe.logger.log_metrics({"train/loss": loss_value, "train/lambda": lam, "train/alpha_mean": alpha,
                                           "train/lr": lr, "train/samples_per_s": rate},
                                          step=recipe.global_step)
            if periodic:
                save_mid_epoch(recipe, epoch, step_in_epoch, loader, sums)
            # SIGTERM (a time limit, a preemption): stop here with a checkpoint; at the epoch's last step the epoch
            # ends first (its evaluation and checkpoint) and `FusionRecipe.train` stops after it
            if step_in_epoch < steps_this_epoch:
                save = None if periodic else lambda: save_mid_epoch(recipe, epoch, step_in_epoch, loader, sums)
                recipe.stop.stop_if_asked(env, save, f"at step {step_in_epoch} of epoch {epoch}")
        bar.update(1)
    bar.close()
    if recorder is not None:
        recorder.close()
    recipe.mid_epoch = None
    loader.resume_from(None)
    all_reduce_sum(env, sums)
    elapsed = time.perf_counter() - t0
    stats = {"train/loss": float(sums[0] / max(sums[1], 1)), "train/lambda": lam,
             "train/samples_per_s": seen * env.world_size / max(elapsed, 1e-9), "train/epoch_seconds": elapsed,
             "train/phase": float(recipe.state.phase)}
    if sums[3]:
        stats["train/alpha_mean"] = float(sums[2] / sums[3])
    return stats


def save_mid_epoch(recipe: "FusionRecipe", epoch: int, step_in_epoch: int, loader: Any, sums: torch.Tensor) -> str:
    """A resumable checkpoint inside `epoch` after its optimizer step `step_in_epoch` (collective)."""
    client = {"curriculum": recipe.state.state_dict(), "best": recipe.best, "global_step": recipe.global_step,
              "history": recipe.history, **mid_epoch_state(recipe.env, loader, epoch, step_in_epoch, recipe.plan,
                                                           recipe.cfg.data.loader.num_workers, sums)}
    tag = step_tag(recipe.global_step)
    log.info("mid-epoch checkpoint %s: epoch %d, step %d of it", tag, epoch, step_in_epoch)
    return recipe.checkpoints.save(recipe.engine.engine, tag, client, best=recipe.best)
