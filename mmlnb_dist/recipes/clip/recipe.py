"""The CLIP recipe: fine-tune the last blocks of both CLIP towers and an MLP head for multi-label classification
of image-caption pairs (seed 002), under DeepSpeed (one process, N GPUs, several nodes, or CPU/gloo).

    result = core.recipe.run(ClipRecipe, cfg)     # what `mmlnb-dist train` (train.recipe=clip) calls

Per epoch: train with BCEWithLogitsLoss (optional positive-class weights), evaluate on `val` every
`train.eval_every` epochs (metrics over the whole split gathered from every rank), checkpoint; inside an epoch,
checkpoint every `train.checkpoint_every_steps` optimizer steps and at the step a SIGTERM stops the run
(`recipes.epochs`: the resume continues the epoch with its remaining batches). At the end (export.finish): reload
the best checkpoint (chosen on `val` by `train.best_metric`), evaluate `val` and `test`, export safetensors + JSON.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from ...core.checkpoint import CheckpointManager, better, epoch_tag, step_tag
from ...core.config import save_config
from ...core.distributed import DistEnv, all_reduce_sum, gather_tensors, plan_batch
from ...core.engine import OptimizerSpec, build_engine, read_user_deepspeed_json, seed_everything
from ...core.errors import ConfigError
from ...core.recipe import Report
from ...core.schedule import planned_group_lrs, schedule_figure
from ...core.divergence import LossWatch
from ...core.signals import GracefulStop
from ...core.tracking import build_logger, epoch_summary, recorded_config
from ...core.tracking.registry import check_registration
from ...data.loader import build_loader
from ...data.preflight import check_shard_files
from ...data.preprocess import ImageSamplePreprocess, MultiHotLabel
from ...data.shardset import ShardError, ShardSet
from ...data.stain_augment import StainAugmentConfig
from ..epochs import MidEpochResume, end_epoch, mid_epoch_resume, mid_epoch_state, restore_rng, train_epochs
from .config import LOWER_IS_BETTER
from .metrics import check_best_metric, check_metric_config, multilabel_metrics, scalar_metrics
from .plots import save_figures
from .towers import CLIP_MEAN, CLIP_STD

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger(__name__)


def preprocess_for(classes: List[str], image_size: int, augment: bool, mean: Sequence[float] = CLIP_MEAN,
                   std: Sequence[float] = CLIP_STD, stain: Optional[StainAugmentConfig] = None,
                   device: Optional[torch.device] = None) -> ImageSamplePreprocess:
    """The image at `image_size` normalised as the image branch expects (`model.image_mean/std`: CLIP's by
    default), the multi-hot label vector, the caption; `stain` (`data.loader.stain`): stain jitter of training
    images when `augment` is on; normalised on `device` (the training device) when given."""
    return ImageSamplePreprocess(image_size, MultiHotLabel(classes), augment=augment, mean=tuple(mean),
                                 std=tuple(std), text=True, stain=stain, device=device)


class ClipRecipe:
    """setup -> train -> (evaluate, save_checkpoint)* -> finish -> cleanup. One instance per run and process."""

    name = "clip"
    result_sections = ("run", "data", "train", "distributed", "clip")
    """Config sections whose change alters the results: a resume that changes them is refused (core.recipe)."""

    def __init__(self, cfg: "Config", env: DistEnv, report: Optional[Report] = None):
        self.cfg, self.env, self.report = cfg, env, report
        self.run_dir = Path(cfg.run.dir)
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", env, cfg.train.keep_checkpoints)
        self.best: Optional[Dict[str, Any]] = None
        self.global_step = 0
        self.history: List[Dict[str, float]] = []
        self.start_epoch = 0
        self.mid_epoch: Optional[MidEpochResume] = None  # set by a mid-epoch checkpoint's resume until the epoch ends
        self.stop = GracefulStop()
        """A SIGTERM while training stops the run at the next optimizer step, with a checkpoint there."""
        self.watch = LossWatch(env, {"train.lr": cfg.train.lr, "clip.tower_lr": cfg.clip.tower_lr}, cfg.distributed)
        """A non-finite loss stops the run at that optimizer step, before anything of it is saved."""
        self.logger = None

    @classmethod
    def check_models(cls, cfg: "Config") -> None:
        """The towers' and encoders' weights of the branches the model builds are given, cached or fetchable
        (nothing built): `tune` checks this before Ray starts, the pipeline before its first stage."""
        from ...models.config import TextEncoderConfig
        from ...models.encoders import check_weights_reachable
        from ...models.encoders_base import settings_named
        from .branches import ENCODER_SETTINGS, image_encoder_config
        from .model import branch_plan
        from .towers import check_towers_reachable

        m = cfg.clip.model
        plan = branch_plan(m)
        if plan["clip_image"] or plan["clip_text"]:
            check_towers_reachable(m.towers.name, cfg.data.loader.image_size)
        with settings_named(ENCODER_SETTINGS):
            check_weights_reachable(
                image_encoder_config(m) if plan["encoder_image"] else None,
                TextEncoderConfig(name=m.text_encoder) if plan["encoder_text"] else None)

    @classmethod
    def trained_on(cls, cfg: "Config") -> Dict[str, List[Dict[str, Any]]]:
        """The shard sets the run trains on, as its tracking records them (`core.recipe.run` refuses a resume on
        others: a set rebuilt at the same path)."""
        return {"train": ShardSet.open(cfg.data.shards).dataset_specs()}

    @classmethod
    def reads(cls, cfg: "Config") -> List[Any]:
        """Folders read throughout the run, held with a shared lock (`core.recipe.run`): no build rewrites them
        under it."""
        return [cfg.data.shards]

    @classmethod
    def check_config(cls, cfg: "Config", world_size: int) -> None:
        """Problems in the config alone (no data read, nothing built): `check` starts with them; `config validate`
        and the pipeline's start call them, before any stage."""
        c = cfg.clip
        check_registration(cfg.tracking)
        plan_batch(cfg.train.global_batch_size, world_size, cfg.distributed.micro_batch_per_gpu,
                   resuming=cfg.run.resume)
        if cfg.distributed.deepspeed_config:
            read_user_deepspeed_json(cfg.distributed.deepspeed_config)
        from ...models.encoders import IMAGE_ENCODERS, unknown_image_encoder
        from .model import branch_plan, tower_sides
        from .openclip_towers import check_open_clip_blocks

        plan = branch_plan(c.model)  # combinations that cannot work (zero-shot needs CLIP's two towers)
        if plan["encoder_image"] and c.model.image_encoder not in IMAGE_ENCODERS:  # before hours of other stages
            raise ConfigError(f"clip.model.image_encoder: {unknown_image_encoder(c.model.image_encoder)}")
        towers = c.model.towers
        if (plan["clip_image"] or plan["clip_text"]) and c.model.fusion != "zero_shot":  # zero-shot trains none
            check_open_clip_blocks(towers.name, towers.unfreeze_blocks, tower_sides(plan))
        if towers.name in ("tiny", "tiny-open_clip") and (plan["clip_image"] or plan["clip_text"]):
            if towers.unfreeze_blocks > towers.tiny.layers and c.model.fusion != "zero_shot":  # built frozen
                raise ConfigError(f"clip.model.towers.unfreeze_blocks: {towers.unfreeze_blocks} blocks asked, but "
                                  f"the tiny towers have clip.model.towers.tiny.layers={towers.tiny.layers}")
            if cfg.data.loader.image_size % towers.tiny.patch_size:
                raise ConfigError(f"data.loader.image_size: {cfg.data.loader.image_size} is not a multiple of "
                                  f"clip.model.towers.tiny.patch_size {towers.tiny.patch_size}")
        check_metric_config(cfg)  # metrics this config's runs report: top-k j-of-k, no loss when zero-shot

    @classmethod
    def check(cls, cfg: "Config", env: DistEnv) -> None:
        """Problems found without work (the shard manifest is read, no sample): raised before anything starts."""
        c = cfg.clip
        cls.check_config(cfg, env.world_size)
        try:
            shards = ShardSet.open(cfg.data.shards)
        except ShardError as err:
            raise ShardError(f"data.shards: {err}") from None
        if shards.task != "multilabel":  # no label sets: every sample would be a bad one, found mid-epoch
            raise ConfigError(f"data.shards: {cfg.data.shards} is a single-label shard set (one class per patch); "
                              f"the clip recipe trains on label sets: build them with `mmlnb-dist shards build "
                              f"--task multilabel`, or train the fusion recipe (train.recipe=fusion)")
        shards.require_split("train", "to train on")
        shards.require_split("val", "to pick the best checkpoint")
        val = {} if c.model.fusion == "zero_shot" else shards.manifest["splits"]["val"]  # zero-shot picks no best
        check_best_metric(cfg.train.best_metric, val.get("label_counts") or {}, shards.num_samples("val"))
        cls.check_models(cfg)
        n_labels = len(shards.classes)
        if n_labels < 2:  # every sample would hold the one label: no ranking to learn, no metric to compute
            raise ConfigError(f"data.shards: {cfg.data.shards} has {n_labels} label ({', '.join(shards.classes)}); "
                              f"the clip recipe ranks labels and needs at least 2: build the set from a labels "
                              f"CSV naming two or more (a high --min-frequency or label merge can leave one)")
        from .model import check_captions, zero_shot_prompts
        check_captions(c.model, shards)  # not empty text for every sample
        if c.model.fusion == "zero_shot":
            zero_shot_prompts(c.model.zero_shot_prompt, list(shards.classes), n_labels)
        if c.top_k > n_labels:
            raise ConfigError(f"clip.top_k: {c.top_k} is more than the {n_labels} labels of {cfg.data.shards}")
        if c.pos_weight is not None and len(c.pos_weight) != n_labels:
            raise ConfigError(f"clip.pos_weight: {len(c.pos_weight)} weights given, but {cfg.data.shards} has "
                              f"{n_labels} labels ({', '.join(shards.classes)}); give one per label or null")
        check_shard_files(shards, cfg.data.loader.preflight, rank=env.rank, world_size=env.world_size)
        CheckpointManager(Path(cfg.run.dir) / "checkpoints", env).check_fresh_start(cfg.run.resume, cfg.train.epochs)

    # -- setup -------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        from .model import branch_summary, build_model

        cfg, env, c = self.cfg, self.env, self.cfg.clip
        self.shards = ShardSet.open(cfg.data.shards)
        self.classes = list(self.shards.classes)
        self.has_test = self.shards.num_samples("test") > 0 and cfg.train.evaluate_test
        self.plan = plan = plan_batch(cfg.train.global_batch_size, env.world_size, cfg.distributed.micro_batch_per_gpu)
        lc = cfg.data.loader
        seed_everything(cfg.run.seed)  # the same on every rank: identical initial weights
        model = build_model(c.model, len(self.classes), lc.image_size, classes=self.classes)
        # the normalisation follows the image branch (CLIP's, an open_clip model's own, ImageNet's)
        preprocess = preprocess_for(self.classes, lc.image_size, augment=lc.augment, mean=model.image_mean,
                                    std=model.image_std, stain=lc.stain, device=env.device)
        eval_bs = cfg.train.eval_batch_size or plan.micro_batch
        self.train_loader = build_loader(self.shards, "train", preprocess, lc, rank=env.rank,
                                         world_size=env.world_size, batch_size=plan.micro_batch, mode="train",
                                         seed=cfg.run.seed)
        self.eval_loaders = {s: build_loader(self.shards, s, preprocess, lc, rank=env.rank, world_size=env.world_size,
                                             batch_size=eval_bs, mode="eval", seed=cfg.run.seed)
                             for s in (["val", "test"] if self.has_test else ["val"])}
        self.steps_per_epoch = max(1, len(self.train_loader) // plan.accumulation)
        self.pos_weight = torch.tensor(c.pos_weight, dtype=torch.float32) if c.pos_weight is not None else None
        t = cfg.train
        groups = model.param_groups(tower_lr=c.tower_lr, head_lr=t.lr)
        self.engine, self.module = None, model.to(env.device)
        if groups:
            self.engine = build_engine(model, groups, optimizer=OptimizerSpec(t.optimizer, t.lr, t.weight_decay),
                                       schedule=t.lr_schedule, total_steps=t.epochs * self.steps_per_epoch,
                                       plan=plan, dist=cfg.distributed, env=env)
            self.module = self.engine.module
        # else nothing trains (zero-shot): no optimizer over zero parameters and no DeepSpeed engine; the model
        # is evaluated as it is (see train)
        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(recorded_config(cfg), self.run_dir / "config.yaml")
            if self.engine is not None:
                (self.run_dir / "deepspeed_config.json").write_text(json.dumps(self.engine.ds_config, indent=2))
        self.logger = build_logger(cfg.tracking, cfg.run, env.rank, self.run_dir, "train", config=cfg,
                                   datasets=self.shards.dataset_specs(),
                                   tags={"recipe": self.name, "world_size": str(env.world_size)})
        if self.engine is not None and env.is_main:  # planned lr curve: run folder (+ MLflow), like the rest
            lrs = planned_group_lrs(self.engine.schedule, self.engine.total_steps)  # towers and head apart
            save_figures(self.logger, self.run_dir / "figures", {"lr_schedule.png": schedule_figure(lrs)})
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        log.info("%d labels; %s; %d of %d parameters train; global batch %d = micro %d x accumulation %d x world %d",
                 len(self.classes), branch_summary(c.model), trainable, sum(p.numel() for p in model.parameters()),
                 plan.global_batch, plan.micro_batch, plan.accumulation, plan.world_size)
        client = self.checkpoints.resume(self.engine.engine, cfg.run.resume) if self.engine is not None else None
        if client:
            self.best = client.get("best")
            self.global_step = int(client.get("global_step", 0))
            self.history = list(client.get("history", []))
            self.start_epoch = int(client["data_position"]["next_epoch"])
            log.info("continuing at epoch %d", self.start_epoch)
            self.mid_epoch = mid_epoch_resume(client, env, plan, lc.num_workers, self.logger)
        if cfg.run.resume:  # what the killed process logged after its checkpoint is logged again from here
            self.logger.resumed_at(self.global_step if client else -1)

    @property
    def model(self):
        return self.module

    def _inputs(self, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        return self.model.inputs(batch["image"], batch["text"], self.env.device)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weight = self.pos_weight.to(logits.device) if self.pos_weight is not None else None
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=weight)

    # -- training ----------------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> Dict[str, float]:
        """Train one epoch (or what is left of it after a mid-epoch checkpoint); returns its statistics."""
        cfg, env, engine, acc = self.cfg, self.env, self.engine.engine, self.plan.accumulation
        resume = self.mid_epoch if self.mid_epoch is not None and self.mid_epoch.position.epoch == epoch else None
        # A per-epoch seed (dropout, augmentation): a resumed run replays an epoch exactly (a mid-epoch resume
        # restores the saved RNG state instead, below).
        seed_everything(cfg.run.seed * 100_003 + epoch * 101 + env.rank)
        engine.train()
        loader = self.train_loader
        loader.set_epoch(epoch)
        loader.resume_from(resume.position if resume is not None else None)
        n = (len(loader) // acc) * acc
        if n == 0 and resume is None:
            raise ConfigError(f"train.global_batch_size: an epoch has {len(loader)} micro batches per rank, fewer "
                              f"than the gradient accumulation {acc}; lower the global batch")
        step_in_epoch = resume.position.step_in_epoch if resume is not None else 0
        steps_this_epoch = step_in_epoch + n // acc
        # loss * samples, samples
        sums = resume.epoch_sums(env, 2) if resume is not None else torch.zeros(2, dtype=torch.float64)
        t0, seen = time.perf_counter(), 0
        for i, batch in zip(range(n), loader):
            if i == 0 and resume is not None:
                restore_rng(resume, env, cfg.run.seed, epoch)  # after the first fetch (starting the reader draws)
            labels = batch["label"].to(env.device)
            loss = self._loss(engine(**self._inputs(batch)), labels)
            engine.backward(loss)
            lr = self.engine.lr()  # the rate this step trains at: DeepSpeed's step advances the schedule after it
            engine.step()
            value = float(loss.detach())
            self.watch.see(value)
            sums += torch.tensor([value * len(labels), len(labels)], dtype=torch.float64)
            seen += len(labels)
            if (i + 1) % acc == 0:
                self.global_step += 1
                step_in_epoch += 1
                last = step_in_epoch == steps_this_epoch  # checkpointed (and evaluated) at the epoch's end
                every = cfg.train.checkpoint_every_steps
                periodic = not last and bool(every) and self.global_step % every == 0
                saved = last or periodic or self.stop.requested  # a SIGTERM saves this step too
                self.watch.step_done(engine.was_step_applied(), f"at step {step_in_epoch} of epoch {epoch} "
                                     f"(optimizer step {self.global_step})", engine.module if saved else None)
                if self.global_step % cfg.train.log_every == 0:
                    self.logger.log_metrics({"train/loss": value, "train/lr": lr}, step=self.global_step)
                if not last:
                    if periodic:
                        self.save_mid_epoch(epoch, step_in_epoch, sums)
                    self.stop.stop_if_asked(env, None if periodic else lambda: self.save_mid_epoch(
                        epoch, step_in_epoch, sums), f"at step {step_in_epoch} of epoch {epoch}")
        self.mid_epoch = None
        loader.resume_from(None)
        all_reduce_sum(env, sums)
        elapsed = time.perf_counter() - t0
        return {"train/loss": float(sums[0] / max(sums[1], 1)), "train/epoch_seconds": elapsed,
                "train/samples_per_s": seen * env.world_size / max(elapsed, 1e-9)}

    @torch.no_grad()
    def evaluate(self, split: str = "val", log_data: bool = True) -> Dict[str, Any]:
        """Metrics of the current weights over the whole split (each sample once across ranks) and its loss."""
        engine = self.engine.engine if self.engine is not None else self.module
        engine.eval()
        logits, labels = [], []
        for batch in self.eval_loaders[split]:
            logits.append(engine(**self._inputs(batch)).float().cpu())
            labels.append(batch["label"].float())
        n_labels = len(self.classes)
        local = (torch.cat(logits) if logits else torch.zeros(0, n_labels),
                 torch.cat(labels) if labels else torch.zeros(0, n_labels))
        scores, targets = gather_tensors(self.env, local)
        self.eval_loaders[split].end_epoch(self.run_dir, self.logger if log_data else None, step=self.global_step)
        metrics = multilabel_metrics(scores, targets, self.classes, self.cfg.clip.top_k, split)
        if self.cfg.clip.model.fusion != "zero_shot":
            # zero-shot logits are logit_scale x cosine (sigmoids all near 1): a BCE of them measures nothing, and
            # would be compared with trained runs' losses (registry alias, ablation tables); left out
            metrics["loss"] = float(self._loss(scores, targets))
        return metrics

    def is_better(self, value: float) -> bool:
        """Whether `value` of `train.best_metric` beats the best checkpoint's (`recipes.epochs.end_epoch`)."""
        return better(value, self.best["value"] if self.best else None,
                      "min" if self.cfg.train.best_metric in LOWER_IS_BETTER else "max")

    def checkpoint_tag(self, epoch: int) -> str:
        """The tag of the checkpoint at the end of `epoch`: by epoch, or by optimizer step when mid-epoch
        checkpoints are on (a SIGTERM's step checkpoint may sit among epoch tags: `list_tags` orders tags as
        they were saved)."""
        return step_tag(self.global_step) if self.cfg.train.checkpoint_every_steps else epoch_tag(epoch)

    def save_checkpoint(self, epoch: int) -> str:
        """A resumable checkpoint of the end of `epoch` (collective)."""
        client = {"best": self.best, "global_step": self.global_step, "history": self.history,
                  "data_position": {"next_epoch": epoch + 1, "granularity": "epoch"}}
        return self.checkpoints.save(self.engine.engine, self.checkpoint_tag(epoch), client, best=self.best)

    def save_mid_epoch(self, epoch: int, step_in_epoch: int, sums: torch.Tensor) -> str:
        """A resumable checkpoint inside `epoch` after its optimizer step `step_in_epoch` (collective)."""
        client = {"best": self.best, "global_step": self.global_step, "history": self.history,
                  **mid_epoch_state(self.env, self.train_loader, epoch, step_in_epoch, self.plan,
                                    self.cfg.data.loader.num_workers, sums)}
        tag = step_tag(self.global_step)
        log.info("mid-epoch checkpoint %s: epoch %d, step %d of it", tag, epoch, step_in_epoch)
        return self.checkpoints.save(self.engine.engine, tag, client, best=self.best)

    def train(self) -> Dict[str, Any]:
        from .export import finish

        if self.engine is None:
            return self.evaluate_untrained()
        train_epochs(self)  # a SIGTERM (time limit, preemption) stops at a step or before the finish, checkpointed
        return finish(self)

    def _train_and_evaluate(self, epoch: int, last: int) -> None:
        """One epoch: train, log, evaluate, checkpoint; a SIGTERM during it stops the run after its checkpoint."""
        cfg = self.cfg
        stats = self.train_epoch(epoch)
        self.train_loader.end_epoch(self.run_dir, self.logger, step=self.global_step)
        self.logger.log_metrics(epoch_summary(stats), step=self.global_step)
        value = None
        if (epoch + 1) % cfg.train.eval_every == 0 or epoch == last:
            metrics = self.evaluate("val")
            scalars = scalar_metrics(metrics, "val/")
            self.logger.log_metrics({**scalars, "epoch": float(epoch)}, step=self.global_step)
            log.info("epoch %d  train loss %.4f  val loss %.4f  micro AUROC %.3f  top-%d micro F1 %.3f",
                     epoch, stats["train/loss"], metrics["loss"], metrics["micro_auroc"], cfg.clip.top_k,
                     metrics["micro_f1"])
            self.history.append({"epoch": epoch, **stats, **scalars})
            if self.report is not None:
                self.report(epoch, {**scalars, **stats, "epoch": epoch})
            value = float(metrics[cfg.train.best_metric])
        end_epoch(self, epoch, last, value)

    def evaluate_untrained(self) -> Dict[str, Any]:
        """A model with nothing to train (zero-shot CLIP): no epochs, no checkpoint; evaluate val (and test) and
        export, as at the end of a run. Reports once (Ray Tune needs a result from every trial)."""
        from .export import finish

        log.info("nothing trains (clip.model.fusion=%s): skipping the %d epochs; evaluating and exporting",
                 self.cfg.clip.model.fusion, self.cfg.train.epochs)
        result = finish(self)
        if self.report is not None:
            self.report(0, {k: v for k, v in result.items() if k.startswith("val/") and isinstance(v, float)})
        return result

    def cleanup(self, status: str = "FINISHED") -> None:
        if self.logger is not None:
            self.logger.close(status)
