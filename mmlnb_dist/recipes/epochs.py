"""What the recipes' epoch loops over a `data.loader` training loader (fusion, CLIP) share: the end of an epoch
(best checkpoint, checkpoint, stop on SIGTERM) and mid-epoch checkpoints, what they record and how a resumed run
continues the epoch from one.

With `train.checkpoint_every_steps = N` (or on a SIGTERM, see `core.signals.GracefulStop`) a checkpoint
`step-NNNNNN` is written inside an epoch. Its client state holds the data position (`data.position.DataPosition`:
per (rank, worker) slot the epoch positions consumed, the epoch, the step in it, world size, workers, micro batch,
accumulation), every rank's RNG state (added by `CheckpointManager.save`) and every rank's running sums of the
epoch (the recipe's own: loss x n, n, ...). A resumed run then:

- on the same world size, workers and micro batch: reads the epoch again in the same order, drops the batches
  already trained on, restores each rank's RNG just before its first step: the remaining steps are the very ones
  an uninterrupted run takes (same batches, same dropout), so the final weights are equal;
- on another layout (2 processes -> 1, 1 -> 2, other workers): deals the epoch's unconsumed samples anew over the
  new ranks (each once), keeps the global batch (the accumulation is recomputed by `plan_batch`), reseeds from
  (seed, epoch, step, rank), and says so: "resuming on N processes, saved with M: accumulation A -> B, K samples
  of epoch E left" (logged, and recorded in MLflow as tags and params).

The recipe keeps its loop; these functions are the parts every such loop shares:

    train_epochs(recipe)                                    # the epochs, stopping before the finish on SIGTERM
    end_epoch(recipe, epoch, last, value)                                   # after the epoch's evaluation

    resume = mid_epoch_resume(client, env, plan, num_workers, logger)     # at setup, from the checkpoint
    sums = resume.epoch_sums(env, width) if resume else zeros(width)       # the epoch's running sums so far
    restore_rng(resume, env, seed, epoch)                                   # after the first batch is fetched
    client.update(mid_epoch_state(env, loader, epoch, step, plan, num_workers, sums))   # collective, to save
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Protocol

import torch

from ..core.checkpoint import set_rng_state
from ..core.distributed import BatchPlan, DistEnv, all_gather_object
from ..core.engine import seed_everything
from ..data.position import DataPosition

log = logging.getLogger(__name__)


class EpochRecipe(Protocol):
    """What `end_epoch` needs of a recipe."""

    cfg: Any
    env: DistEnv
    best: Optional[Dict[str, Any]]
    stop: Any  # core.signals.GracefulStop

    def is_better(self, value: float) -> bool: ...
    def checkpoint_tag(self, epoch: int) -> str: ...
    def save_checkpoint(self, epoch: int) -> str: ...


def end_epoch(recipe: EpochRecipe, epoch: int, last: int, value: Optional[float]) -> None:
    """After `epoch` (and its evaluation: `value` of `train.best_metric`, None when it was not evaluated): a better
    value becomes the best checkpoint; the epoch is checkpointed when it is the best, due
    (`train.checkpoint_every`) or the last; before the last epoch, a SIGTERM stops the run here, checkpointed."""
    cfg = recipe.cfg
    improved = value is not None and recipe.is_better(value)
    if improved:
        recipe.best = {"tag": recipe.checkpoint_tag(epoch), "epoch": epoch, "metric": cfg.train.best_metric,
                       "value": value}
    saved = improved or (epoch + 1) % cfg.train.checkpoint_every == 0 or epoch == last
    if saved:
        recipe.save_checkpoint(epoch)
    if epoch < last:
        recipe.stop.stop_if_asked(recipe.env, None if saved else lambda: recipe.save_checkpoint(epoch),
                                  f"after epoch {epoch}")


def train_epochs(recipe: Any) -> None:
    """The epochs from `recipe.start_epoch` (`recipe._train_and_evaluate(epoch, last)` each), under `recipe.stop`.
    A SIGTERM in the last epoch's last step or validation: that epoch's checkpoint is written (the last epoch's
    always is), so stop here, before the recipe's finish, which the scheduler's SIGKILL would otherwise cut anywhere
    (`GracefulStop` is only asked at the steps and epoch ends before the last)."""
    last = recipe.cfg.train.epochs - 1
    with recipe.stop:
        for epoch in range(recipe.start_epoch, recipe.cfg.train.epochs):
            recipe._train_and_evaluate(epoch, last)
        recipe.stop.stop_if_asked(recipe.env, None, f"after the last epoch ({last}), before the finish")


@dataclass
class MidEpochResume:
    """What a mid-epoch checkpoint tells the resumed run about the epoch it stopped in."""

    position: DataPosition
    rng: List[Any]
    """Every saved rank's RNG state (restored only when the layout is the same)."""
    sums: List[List[float]]
    """Every saved rank's running sums of the epoch (the recipe's: loss x n, n, ...)."""
    same_layout: bool
    """Whether this run has the saved world size, loader workers and micro batch (an exact continuation)."""

    def epoch_sums(self, env: DistEnv, width: int) -> torch.Tensor:
        """This rank's starting running sums for the rest of the epoch (`width` values, float64). On another
        layout rank 0 carries the saved total, since the epoch's all-reduce adds every rank's part."""
        sums = torch.zeros(width, dtype=torch.float64)
        if self.sums:
            if self.same_layout:
                sums += torch.tensor(self.sums[env.rank], dtype=torch.float64)
            elif env.rank == 0:
                sums += torch.tensor(self.sums, dtype=torch.float64).sum(0)
        return sums


def mid_epoch_resume(client: Dict[str, Any], env: DistEnv, plan: BatchPlan, num_workers: int,
                     logger: Any) -> Optional[MidEpochResume]:
    """The mid-epoch part of a checkpoint's client state (None for an epoch checkpoint); logs a change of layout
    and records it in the tracker (`logger`). `plan` is this run's batch plan."""
    state = client.get("data_position") or {}
    if state.get("granularity") != "step":
        return None
    pos = DataPosition.from_state(state)
    resume = MidEpochResume(pos, list(client.get("rng") or []), [list(s) for s in client.get("epoch_sums") or []],
                            pos.same_layout(env.world_size, num_workers, plan.micro_batch))
    left = len(pos.remaining())
    log.info("continuing epoch %d after its step %d (%d samples of the epoch left)", pos.epoch, pos.step_in_epoch,
             left)
    if not resume.same_layout:
        # `redeal_slot` gives each rank len(left) // world_size: the rest is not trained this epoch, as a fresh
        # epoch drops its remainder, and is said here (the run's sample count for the epoch is that much lower)
        dropped = left % env.world_size
        if env.is_main:
            log.info("resuming on %d processes, saved with %d: accumulation %d -> %d, %d samples of epoch %d left "
                     "(dealt anew over the ranks: %d each, %d left over and not trained this epoch; global batch %d "
                     "kept; workers %d -> %d, micro batch %d -> %d)",
                     env.world_size, pos.world_size, pos.accumulation, plan.accumulation, left, pos.epoch,
                     left // env.world_size, dropped, plan.global_batch, pos.num_workers, num_workers,
                     pos.micro_batch, plan.micro_batch)
        tag = client.get("tag", "?")
        logger.set_tags({"resume/world_size_change": f"{pos.world_size}->{env.world_size}",
                         "resume/accumulation_change": f"{pos.accumulation}->{plan.accumulation}"})
        # Params are write-once in MLflow: keyed by the checkpoint resumed from, a second resume adds its own.
        logger.log_params({f"resume.{tag}.world_size_saved": pos.world_size, f"resume.{tag}.world_size": env.world_size,
                           f"resume.{tag}.accumulation_saved": pos.accumulation,
                           f"resume.{tag}.accumulation": plan.accumulation,
                           f"resume.{tag}.samples_left": left, f"resume.{tag}.samples_dropped": dropped,
                           f"resume.{tag}.epoch": pos.epoch})
    return resume


def restore_rng(resume: MidEpochResume, env: DistEnv, seed: int, epoch: int) -> None:
    """Put this rank's RNG where the interrupted run had it (same layout), or reseed it from (seed, epoch, step,
    rank). Call it after the resumed epoch's first batch is fetched: starting the reader draws from the RNG."""
    if resume.same_layout and len(resume.rng) == env.world_size:
        set_rng_state(resume.rng[env.rank])
    else:  # other ranks, other batches: no saved state applies; a derived seed keeps the run reproducible
        seed_everything(seed * 100_003 + epoch * 101 + resume.position.step_in_epoch * 7919 + env.rank)


def mid_epoch_state(env: DistEnv, loader: Any, epoch: int, step_in_epoch: int, plan: BatchPlan, num_workers: int,
                    sums: torch.Tensor) -> Dict[str, Any]:
    """The client-state entries (`data_position`, `epoch_sums`) of a checkpoint inside `epoch` after its optimizer
    step `step_in_epoch` (collective: every rank's loader position and sums are gathered)."""
    parts = all_gather_object(env, (loader.data_position(), sums.tolist()))
    consumed: Dict[str, List[int]] = {}
    batches: Dict[str, int] = {}
    for part, _ in parts:
        consumed.update(part["consumed"])
        batches.update(part["batches"])
    first = parts[0][0]
    position = DataPosition(epoch=epoch, step_in_epoch=step_in_epoch, world_size=env.world_size,
                            num_workers=num_workers, micro_batch=plan.micro_batch, accumulation=plan.accumulation,
                            epoch_positions=first["epoch_positions"], consumed=consumed, batches=batches,
                            before_redeal=first["before_redeal"])
    return {"data_position": position.to_state(), "epoch_sums": [s for _, s in parts]}
