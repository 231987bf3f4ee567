"""The fusion recipe: train the dual-branch MMLNB classifier (encoders + PRMF + heads) with the curriculum loss,
staged freezing and frozen-feature caching, under DeepSpeed (one process, N GPUs, several nodes, or CPU/gloo).

    result = core.recipe.run(FusionRecipe, cfg)     # what the CLI, the pipeline, Tune and tests call

Per epoch: enter the epoch's freezing phase (`phases.PhaseController`), train, evaluate on `val` every
`train.eval_every` epochs, checkpoint. At the end: reload the best checkpoint (chosen on `val` by
`train.best_metric`), evaluate `val` and `test` with it, export fp32 safetensors for inference.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import torch

from ...core.checkpoint import CheckpointManager, better, epoch_tag, step_tag
from ...core.config import save_config
from ...core.distributed import DistEnv, plan_batch
from ...core.divergence import LossWatch
from ...core.engine import OptimizerSpec, build_engine, read_user_deepspeed_json, seed_everything
from ...core.errors import ConfigError
from ...core.progress import progress_bar
from ...core.recipe import Report
from ...core.schedule import schedule_figure
from ...core.signals import GracefulStop
from ...core.tracking import build_logger, epoch_summary, recorded_config
from ...core.tracking.registry import check_registration
from ...data.loader import build_loader
from ...data.preflight import check_shard_files
from ...data.shardset import ShardError, ShardSet
from .curriculum import CurriculumState, phases_never_run, ramp_cut_short
from ..epochs import MidEpochResume, end_epoch, mid_epoch_resume, train_epochs
from .loop import too_few_micro_batches, train_epoch
from .metrics import format_metrics_table, scalar_metrics
from .phases import PhaseController, planned_phase_lrs
from .steps import evaluate as evaluate_split
from .steps import preprocess_for

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger(__name__)


class FusionRecipe:
    """setup -> train -> (evaluate, save_checkpoint)* -> finish -> cleanup. One instance per run and process."""

    name = "fusion"
    result_sections = ("run", "data", "train", "distributed", "fusion")
    """Config sections whose change alters the results: a resume that changes them is refused (core.recipe)."""
    resume_may_change = ("fusion.record_train_keys",)

    def __init__(self, cfg: "Config", env: DistEnv, report: Optional[Report] = None):
        self.cfg, self.env, self.report = cfg, env, report
        self.run_dir = Path(cfg.run.dir)
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", env, cfg.train.keep_checkpoints)
        self.state = CurriculumState()
        self.best: Optional[Dict[str, Any]] = None
        self.global_step = 0
        self.history: List[Dict[str, float]] = []
        self.start_epoch = 0
        self.mid_epoch: Optional[MidEpochResume] = None
        """Set by a resume from a mid-epoch checkpoint (`train.checkpoint_every_steps`) until that epoch ends."""
        self.stop = GracefulStop()
        """A SIGTERM while training stops the run at the next optimizer step, with a checkpoint (`train`)."""
        self.watch = LossWatch(env, {"train.lr": cfg.train.lr}, cfg.distributed)
        """A non-finite loss stops the run at that optimizer step, before anything of it is saved (`loop`)."""
        self.logger = None
        self.ledger_logged: Dict[str, int] = {}
        """The step each split's bad-sample ledger was last logged at (`evaluate`)."""

    @classmethod
    def check_models(cls, cfg: "Config") -> None:
        """The encoders' weights are given, cached or fetchable (`check_weights_reachable`, nothing built): the
        pipeline checks this before its first stage, not at its train stage hours later."""
        from ...models.encoders import check_weights_reachable
        from ...models.encoders_base import settings_named
        from .model import ENCODER_SETTINGS

        m = cfg.fusion.model
        with settings_named(ENCODER_SETTINGS):
            check_weights_reachable(m.image_encoder if m.mode != "text_only" else None,
                                    m.text_encoder if m.mode != "image_only" else None)

    @classmethod
    def trained_on(cls, cfg: "Config") -> Dict[str, List[Dict[str, Any]]]:
        """The shard sets the run trains on, as its tracking records them (`core.recipe.run` refuses a resume on
        others: a set rebuilt at the same path)."""
        return {"train": ShardSet.open(cfg.data.shards).dataset_specs()}

    @classmethod
    def reads(cls, cfg: "Config") -> List[Any]:
        """Folders read throughout the run, held with a shared lock (`core.recipe.run`): no build rewrites them
        under it."""
        return [cfg.data.shards, cfg.fusion.image_features]

    @classmethod
    def check_config(cls, cfg: "Config", world_size: int) -> None:
        """Problems in the config alone (no data read, nothing built): `check` starts with them; `config validate`
        and the pipeline's start call them, before any stage."""
        from ...models.encoders import IMAGE_ENCODERS, unknown_image_encoder

        check_registration(cfg.tracking)
        name = cfg.fusion.model.image_encoder.name
        if cfg.fusion.model.mode != "text_only" and name not in IMAGE_ENCODERS:
            raise ConfigError(f"fusion.model.image_encoder.name: {unknown_image_encoder(name)}")
        plan_batch(cfg.train.global_batch_size, world_size, cfg.distributed.micro_batch_per_gpu,
                   resuming=cfg.run.resume)
        if cfg.distributed.deepspeed_config:
            read_user_deepspeed_json(cfg.distributed.deepspeed_config)
        if cfg.fusion.channels_last and (cfg.distributed.zero_stage > 0 or cfg.distributed.precision != "fp32"
                                         or cfg.distributed.deepspeed_config):
            # ZeRO and DeepSpeed's bf16/fp16 optimizers keep parameters as views of flat buffers; a layout change
            # after start-up would cut them loose.
            raise ConfigError("fusion.channels_last: needs distributed.zero_stage=0 and distributed.precision=fp32 "
                              "without a distributed.deepspeed_config (ZeRO and DeepSpeed's mixed-precision "
                              "optimizers hold parameters in flat buffers); turn one or the other off")

    @classmethod
    def check(cls, cfg: "Config", env: DistEnv) -> None:
        """Problems found without touching a GPU (and reading at most a few samples of one shard, when the
        manifest does not record descriptions): raised before any work starts."""
        from .checks import check_best_metric_defined, check_text_available, warn_untrained_classes

        cls.check_config(cfg, env.world_size)
        try:
            shards = ShardSet.open(cfg.data.shards)
        except ShardError as err:  # name the key to change, as every config error does
            raise ShardError(f"data.shards: {err}") from None
        if shards.task != "single":  # its labels are sets: one class per patch would train and score on a guess
            raise ConfigError(f"data.shards: {cfg.data.shards} is a multi-label shard set (a label set per patch); "
                              f"the fusion recipe predicts one class per patch. Train it with the clip recipe "
                              f"(--config clip-multilabel, or train.recipe=clip)")
        shards.require_split("train", "to train on")
        shards.require_split("val", "to pick the best checkpoint")
        cls.check_models(cfg)
        check_shard_files(shards, cfg.data.loader.preflight, rank=env.rank, world_size=env.world_size)
        check_text_available(cfg, shards)
        check_best_metric_defined(cfg, shards)
        warn_untrained_classes(shards)
        if cfg.fusion.image_features:
            from .extracted import check_config

            check_config(cfg, shards)
        CheckpointManager(Path(cfg.run.dir) / "checkpoints", env).check_fresh_start(cfg.run.resume, cfg.train.epochs)

    # -- setup -------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        from .model import TWO_BRANCH_MODES, build_classifier

        cfg, env = self.cfg, self.env
        # said by the run itself, not by `check`: a search checks its base config, whose phases its trials rescale
        skipped = phases_never_run(cfg.fusion.curriculum, cfg.train.epochs)
        if skipped:  # a warning: the skipped phases' freezing settings are part of what the user asked for
            log.warning("%s", skipped)
        cut_short = ramp_cut_short(cfg.fusion.curriculum, cfg.train.epochs, cfg.fusion.model.mode in TWO_BRANCH_MODES)
        if cut_short:
            log.warning("%s", cut_short)
        self.shards = ShardSet.open(cfg.data.shards)
        self.classes = self.shards.classes
        self.has_test = self.shards.num_samples("test") > 0 and cfg.train.evaluate_test
        self.plan = plan = plan_batch(cfg.train.global_batch_size, env.world_size, cfg.distributed.micro_batch_per_gpu)

        lc = cfg.data.loader
        image_encoder = cfg.fusion.model.image_encoder.name if cfg.fusion.model.mode != "text_only" else None
        preprocess = preprocess_for(self.classes, lc.image_size, augment=lc.augment, image_encoder=image_encoder,
                                    stain=lc.stain, device=env.device)
        if cfg.fusion.image_features:  # extracted features instead of images (checked against the encoder below)
            from .extracted import extracted_preprocess

            preprocess = extracted_preprocess(cfg, self.classes)
        eval_bs = cfg.train.eval_batch_size or plan.micro_batch
        self.train_loader = build_loader(self.shards, "train", preprocess, lc, rank=env.rank,
                                         world_size=env.world_size, batch_size=plan.micro_batch, mode="train",
                                         seed=cfg.run.seed)
        self.eval_loaders = {s: build_loader(self.shards, s, preprocess, lc, rank=env.rank, world_size=env.world_size,
                                             batch_size=eval_bs, mode="eval", seed=cfg.run.seed)
                             for s in (["train", "val", "test"] if self.has_test else ["train", "val"])}
        if len(self.train_loader) < plan.accumulation:  # no optimizer step in an epoch: said before any work
            raise too_few_micro_batches(len(self.train_loader), plan.accumulation)
        micro_batches = -(-self.train_loader.per_rank // plan.micro_batch)
        self.steps_per_epoch = max(1, micro_batches // plan.accumulation)

        seed_everything(cfg.run.seed)  # the same on every rank: identical initial weights
        model = build_classifier(cfg.fusion.model, len(self.classes))
        if cfg.fusion.image_features:
            from .extracted import check_encoder

            check_encoder(cfg, model.image_encoder, self.shards)
        # All parameters enter the optimizer (ZeRO partitions them once, at initialisation); a phase that freezes
        # an encoder sets requires_grad=False and the schedule gives its group lr 0, so Adam's momentum cannot
        # move it.
        t = cfg.train
        self.engine = build_engine(model, model.param_groups(),
                                   optimizer=OptimizerSpec(t.optimizer, t.lr, t.weight_decay), schedule=t.lr_schedule,
                                   total_steps=t.epochs * self.steps_per_epoch, plan=plan, dist=cfg.distributed,
                                   env=env)
        # After the engine: its start-up broadcast views parameters as bytes, which channels-last weights refuse.
        model.speed_up(channels_last=cfg.fusion.channels_last, compile=cfg.fusion.compile)
        self.phases = PhaseController(cfg, model, self.engine.schedule, self.eval_loaders["train"], env, self.run_dir)

        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(recorded_config(cfg), self.run_dir / "config.yaml")
            (self.run_dir / "deepspeed_config.json").write_text(json.dumps(self.engine.ds_config, indent=2))
        self.logger = build_logger(cfg.tracking, cfg.run, env.rank, self.run_dir, "train", config=cfg,
                                   datasets=self.shards.dataset_specs(),
                                   tags={"recipe": self.name, "world_size": str(env.world_size)})
        if self.logger.wants_figures:
            # 0 where a curriculum phase freezes a group (the figure shows what each branch trained at)
            lrs = planned_phase_lrs(self.engine.schedule, cfg.fusion.curriculum, model, self.steps_per_epoch,
                                    self.engine.total_steps)
            self.logger.log_figure(schedule_figure(lrs), "lr_schedule.png")
        log.info("%d classes %s; world %d; global batch %d = micro %d x accumulation %d x world %d; ZeRO %d, %s; "
                 "%d optimizer steps (%s lr schedule)", len(self.classes), self.classes, env.world_size,
                 plan.global_batch, plan.micro_batch, plan.accumulation, plan.world_size, cfg.distributed.zero_stage,
                 cfg.distributed.precision, self.engine.total_steps, t.lr_schedule.name)

        client = self.checkpoints.resume(self.engine.engine, cfg.run.resume)
        if client:
            self.state.load_state_dict(client["curriculum"])
            self.best = client.get("best")
            self.global_step = int(client.get("global_step", 0))
            self.history = list(client.get("history", []))
            self.start_epoch = int(client["data_position"]["next_epoch"])
            log.info("continuing at epoch %d", self.start_epoch)
            self.mid_epoch = mid_epoch_resume(client, env, plan, cfg.data.loader.num_workers, self.logger)
        if cfg.run.resume:  # what the killed process logged after its checkpoint is logged again from here
            self.logger.resumed_at(self.global_step if client else -1)

    @property
    def model(self):
        return self.engine.module

    def autocast(self):
        """bf16 autocast around forward and loss when `fusion.cpu_autocast` applies (CPU, fp32 weights)."""
        on = (self.cfg.fusion.cpu_autocast and self.env.device.type == "cpu"
              and self.cfg.distributed.precision == "fp32")
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=on)

    # -- training (the epoch loop is in .loop) -----------------------------------------------------------------
    def train_epoch(self, epoch: int) -> Dict[str, float]:
        return train_epoch(self, epoch)

    def evaluate(self, split: str = "val"):
        """(metrics, gathered predictions) of the current weights on `split`."""
        def bar(it):
            return progress_bar(it, desc=f"eval {split}", enabled=self.env.is_main, leave=False, dynamic_ncols=True)

        def forward(**inputs):
            with self.autocast():
                return self.engine.engine(**inputs)

        result = evaluate_split(self.model, forward, self.eval_loaders[split], self.phases.caches,
                                self.env, self.classes, progress=bar)
        # The last epoch's validation and the finish's (best checkpoint) run at one step: the ledger's metrics are
        # logged once per step, as every other metric is (the pass is still checked against the budget).
        logger = self.logger if self.ledger_logged.get(split) != self.global_step else None
        self.ledger_logged[split] = self.global_step
        self.eval_loaders[split].end_epoch(self.run_dir, logger, step=self.global_step)
        return result

    def is_better(self, value: float) -> bool:
        """Whether `value` of `train.best_metric` beats the best checkpoint's (`recipes.epochs.end_epoch`)."""
        return better(value, self.best["value"] if self.best else None,
                      "min" if self.cfg.train.best_metric == "loss" else "max")

    def checkpoint_tag(self, epoch: int) -> str:
        """The tag of the checkpoint at the end of `epoch`: by epoch, or by optimizer step when mid-epoch
        checkpoints are on (a SIGTERM's step checkpoint may sit among epoch tags: `list_tags` orders tags as
        they were saved)."""
        return step_tag(self.global_step) if self.cfg.train.checkpoint_every_steps else epoch_tag(epoch)

    def save_checkpoint(self, epoch: int) -> str:
        """A resumable checkpoint of the end of `epoch` (collective)."""
        position = {"next_epoch": epoch + 1, "granularity": "epoch", "world_size": self.env.world_size,
                    "accumulation": self.plan.accumulation}
        client = {"curriculum": self.state.state_dict(), "best": self.best, "global_step": self.global_step,
                  "history": self.history, "data_position": position}
        return self.checkpoints.save(self.engine.engine, self.checkpoint_tag(epoch), client, best=self.best)

    def train(self) -> Dict[str, Any]:
        train_epochs(self)  # (a SIGTERM in the last epoch stops there, before the finish)
        from .finish import finish

        return finish(self)

    def _train_and_evaluate(self, epoch: int, last: int) -> None:
        """One epoch: train, log, evaluate, checkpoint; a SIGTERM during it stops the run after its checkpoint."""
        cfg = self.cfg
        stats = self.train_epoch(epoch)
        if self.phases.table is None:  # the epoch read shards (not cached features): report its bad samples
            self.train_loader.end_epoch(self.run_dir, self.logger, step=self.global_step)
        self.logger.log_metrics(epoch_summary(stats), step=self.global_step)
        value = None
        if (epoch + 1) % cfg.train.eval_every == 0 or epoch == last:
            metrics, _ = self.evaluate("val")
            scalars = scalar_metrics(metrics, "val/")
            self.logger.log_metrics({**scalars, "epoch": float(epoch)}, step=self.global_step)
            # One console line per epoch; the full table goes to the log file (DEBUG) and MLflow (metrics).
            log.info("epoch %d  loss %.4f  lambda %.2f  %.0f samples/s  val BAcc %.4f  Acc %.4f  loss %.4f", epoch,
                     stats["train/loss"], stats["train/lambda"], stats["train/samples_per_s"],
                     metrics["balanced_accuracy"], metrics["accuracy"], metrics["loss"])
            log.debug("%s", format_metrics_table(metrics, self.classes, f"validation, epoch {epoch}"))
            self.history.append({"epoch": epoch, **stats, **scalars})
            if self.report is not None:
                # The cache counts ride along: a trial a scheduler stops early never writes its result file.
                loads = {f"cache/{k}": v for k, v in self.phases.cache_loads.items()}
                self.report(epoch, {**scalars, **stats, **loads, "epoch": epoch})
            value = float(metrics[cfg.train.best_metric])
        end_epoch(self, epoch, last, value)

    def cleanup(self, status: str = "FINISHED") -> None:
        if self.logger is not None:
            self.logger.close(status)
