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
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import torch

from ...core.checkpoint import CheckpointManager, better, epoch_tag
from ...core.config import save_config
from ...core.distributed import DistEnv, all_reduce_sum, plan_batch
from ...core.engine import OptimizerSpec, build_engine, read_user_deepspeed_json, seed_everything
from ...core.errors import ConfigError
from ...core.recipe import Report
from ...core.schedule import planned_lrs, schedule_figure
from ...core.tracking import build_logger
from ...data.loader import build_loader
from ...data.preflight import check_shard_files
from ...data.shardset import ShardError, ShardSet
from .curriculum import CurriculumState, curriculum_lambda, curriculum_loss
from .metrics import format_metrics_table, scalar_metrics
from .phases import PhaseController
from .steps import evaluate as evaluate_split
from .steps import preprocess_for, prepare_inputs

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger(__name__)


class FusionRecipe:
    """setup -> train -> (evaluate, save_checkpoint)* -> finish -> cleanup. One instance per run and process."""

    name = "fusion"
    result_sections = ("run", "data", "train", "distributed", "fusion")
    """Config sections whose change alters the results: a resume that changes them is refused (core.recipe)."""

    def __init__(self, cfg: "Config", env: DistEnv, report: Optional[Report] = None):
        self.cfg, self.env, self.report = cfg, env, report
        self.run_dir = Path(cfg.run.dir)
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", env, cfg.train.keep_checkpoints)
        self.state = CurriculumState()
        self.best: Optional[Dict[str, Any]] = None
        self.global_step = 0
        self.history: List[Dict[str, float]] = []
        self.start_epoch = 0
        self.logger = None

    @classmethod
    def check(cls, cfg: "Config", env: DistEnv) -> None:
        """Problems found without touching a GPU (and reading at most a few samples of one shard, when the
        manifest does not record descriptions): raised before any work starts."""
        from ...models.encoders import IMAGE_ENCODERS
        from .checks import check_best_metric_defined, check_text_available

        name = cfg.fusion.model.image_encoder.name
        if cfg.fusion.model.mode != "text_only" and name not in IMAGE_ENCODERS:
            raise ConfigError(f"fusion.model.image_encoder.name: unknown encoder '{name}'; choose one of "
                              f"{sorted(IMAGE_ENCODERS)}")
        plan_batch(cfg.train.global_batch_size, env.world_size, cfg.distributed.micro_batch_per_gpu)
        last_phase = cfg.fusion.curriculum.phases[-1].start_epoch
        if last_phase >= cfg.train.epochs:
            log.info("note: fusion.curriculum.phases start at epoch %d >= train.epochs %d; later phases never run",
                     last_phase, cfg.train.epochs)
        if cfg.distributed.deepspeed_config:
            read_user_deepspeed_json(cfg.distributed.deepspeed_config)
        if cfg.fusion.channels_last and (cfg.distributed.zero_stage > 0 or cfg.distributed.precision != "fp32"
                                         or cfg.distributed.deepspeed_config):
            # ZeRO and DeepSpeed's bf16/fp16 optimizers keep parameters as views of flat buffers; a layout change
            # after start-up would cut them loose.
            raise ConfigError("fusion.channels_last: needs distributed.zero_stage=0 and distributed.precision=fp32 "
                              "without a distributed.deepspeed_config (ZeRO and DeepSpeed's mixed-precision "
                              "optimizers hold parameters in flat buffers); turn one or the other off")
        try:
            shards = ShardSet.open(cfg.data.shards)
        except ShardError as err:  # name the key to change, as every config error does
            raise ShardError(f"data.shards: {err}") from None
        shards.require_split("train", "to train on")
        shards.require_split("val", "to pick the best checkpoint")
        check_shard_files(shards, cfg.data.loader.preflight, rank=env.rank, world_size=env.world_size)
        check_text_available(cfg, shards)
        check_best_metric_defined(cfg, shards)
        if cfg.fusion.image_features:
            from .extracted import check_config

            check_config(cfg, shards)
        CheckpointManager(Path(cfg.run.dir) / "checkpoints", env).check_fresh_start(cfg.run.resume)

    # -- setup -------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        from .model import build_classifier

        cfg, env = self.cfg, self.env
        self.shards = ShardSet.open(cfg.data.shards)
        self.classes = self.shards.classes
        self.has_test = self.shards.num_samples("test") > 0
        self.plan = plan = plan_batch(cfg.train.global_batch_size, env.world_size, cfg.distributed.micro_batch_per_gpu)

        lc = cfg.data.loader
        image_encoder = cfg.fusion.model.image_encoder.name if cfg.fusion.model.mode != "text_only" else None
        preprocess = preprocess_for(self.classes, lc.image_size, augment=lc.augment, image_encoder=image_encoder)
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
                                   total_steps=t.epochs * self.steps_per_epoch, plan=plan, dist=cfg.distributed, env=env)
        # After the engine: its start-up broadcast views parameters as bytes, which channels-last weights refuse.
        model.speed_up(channels_last=cfg.fusion.channels_last, compile=cfg.fusion.compile)
        self.phases = PhaseController(cfg, model, self.engine.schedule, self.eval_loaders["train"], env, self.run_dir)

        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            (self.run_dir / "deepspeed_config.json").write_text(json.dumps(self.engine.ds_config, indent=2))
        self.logger = build_logger(cfg.tracking, cfg.run, env.rank, self.run_dir, "train", config=cfg,
                                   datasets=self.shards.dataset_specs(),
                                   tags={"recipe": self.name, "world_size": str(env.world_size)})
        if self.logger.wants_figures:
            lrs = planned_lrs(t.lr_schedule, self.engine.total_steps, t.lr)
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

    @property
    def model(self):
        return self.engine.module

    def autocast(self):
        """bf16 autocast around forward and loss when `fusion.cpu_autocast` applies (CPU, fp32 weights)."""
        on = (self.cfg.fusion.cpu_autocast and self.env.device.type == "cpu"
              and self.cfg.distributed.precision == "fp32")
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=on)

    # -- training ----------------------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int):
        """(iterator of micro batches, count). The count is the same on every rank and a multiple of the
        gradient accumulation, so every optimizer step is complete and no rank waits on another."""
        acc = self.plan.accumulation
        table = self.phases.table
        if table is not None:
            n = self.steps_per_epoch * acc
            return table.batches(epoch=epoch, seed=self.cfg.run.seed, rank=self.env.rank,
                                 world_size=self.env.world_size, micro_batch=self.plan.micro_batch,
                                 num_micro_batches=n), n
        self.train_loader.set_epoch(epoch)
        n = (len(self.train_loader) // acc) * acc
        if n == 0:
            raise ConfigError(f"train.global_batch_size: an epoch has {len(self.train_loader)} micro batches per "
                              f"rank, fewer than the gradient accumulation {acc}; lower the global batch")
        return iter(self.train_loader), n

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        from tqdm import tqdm

        cfg, env, engine = self.cfg, self.env, self.engine.engine
        self.state.phase = self.phases.enter(epoch)
        # Derived per-epoch seed (dropout etc.): a resumed run replays an epoch exactly without relying on
        # where the RNG stood when the previous process died.
        seed_everything(cfg.run.seed * 100_003 + epoch * 101 + env.rank)
        lam = curriculum_lambda(cfg.fusion.curriculum, epoch)
        self.state.epoch = epoch
        engine.train()
        batches, n = self._epoch_batches(epoch)
        bar = tqdm(total=n, desc=f"epoch {epoch}", disable=not env.is_main, leave=False, dynamic_ncols=True)
        sums = torch.zeros(4, dtype=torch.float64)  # loss*n, n, alpha sum, alpha count
        t0 = time.perf_counter()
        seen = 0
        for i, batch in zip(range(n), batches):
            label = batch["label"].to(env.device)
            inputs = prepare_inputs(self.model, batch, self.phases.caches, env.device)
            with self.autocast():
                out = engine(**inputs)
                loss = curriculum_loss(out["logits"], out["image_logits"], label, lam)
            engine.backward(loss)
            engine.step()
            b = label.numel()
            seen += b
            loss_value = float(loss.detach())
            sums[0] += loss_value * b
            sums[1] += b
            if out["alpha"] is not None:
                sums[2] += float(out["alpha"].detach().float().sum())
                sums[3] += out["alpha"].numel()
            if (i + 1) % self.plan.accumulation == 0:
                self.global_step += 1
                rate = seen * env.world_size / max(time.perf_counter() - t0, 1e-9)
                alpha = float(sums[2] / sums[3]) if sums[3] else float("nan")
                bar.set_postfix(loss=f"{loss_value:.3f}", lam=f"{lam:.2f}", alpha=f"{alpha:.2f}", sps=f"{rate:.0f}")
                if self.global_step % cfg.train.log_every == 0:
                    self.logger.log_metrics({"train/loss": loss_value, "train/lambda": lam, "train/alpha_mean": alpha,
                                             "train/lr": self.engine.lr(), "train/samples_per_s": rate},
                                            step=self.global_step)
            bar.update(1)
        bar.close()
        all_reduce_sum(env, sums)
        elapsed = time.perf_counter() - t0
        stats = {"train/loss": float(sums[0] / max(sums[1], 1)), "train/lambda": lam,
                 "train/samples_per_s": float(sums[1]) / max(elapsed, 1e-9), "train/epoch_seconds": elapsed,
                 "train/phase": float(self.state.phase)}
        if sums[3]:
            stats["train/alpha_mean"] = float(sums[2] / sums[3])
        return stats

    def evaluate(self, split: str = "val"):
        """(metrics, gathered predictions) of the current weights on `split`."""
        from tqdm import tqdm

        def bar(it):
            return tqdm(it, desc=f"eval {split}", disable=not self.env.is_main, leave=False, dynamic_ncols=True)

        def forward(**inputs):
            with self.autocast():
                return self.engine.engine(**inputs)

        result = evaluate_split(self.model, forward, self.eval_loaders[split], self.phases.caches,
                                self.env, self.classes, progress=bar)
        self.eval_loaders[split].end_epoch(self.run_dir, self.logger, step=self.global_step)
        return result

    def _is_better(self, value: float) -> bool:
        return better(value, self.best["value"] if self.best else None,
                      "min" if self.cfg.train.best_metric == "loss" else "max")

    def save_checkpoint(self, epoch: int) -> str:
        """A resumable checkpoint of `epoch` (collective)."""
        client = {"curriculum": self.state.state_dict(), "best": self.best, "global_step": self.global_step,
                  "history": self.history, "data_position": {"next_epoch": epoch + 1, "granularity": "epoch"}}
        return self.checkpoints.save(self.engine.engine, epoch_tag(epoch), client, best=self.best)

    def train(self) -> Dict[str, Any]:
        cfg = self.cfg
        last = cfg.train.epochs - 1
        for epoch in range(self.start_epoch, cfg.train.epochs):
            stats = self.train_epoch(epoch)
            if self.phases.table is None:  # the epoch read shards (not cached features): report its bad samples
                self.train_loader.end_epoch(self.run_dir, self.logger, step=self.global_step)
            self.logger.log_metrics(stats, step=self.global_step)
            improved = False
            if (epoch + 1) % cfg.train.eval_every == 0 or epoch == last:
                metrics, _ = self.evaluate("val")
                scalars = scalar_metrics(metrics, "val/")
                self.logger.log_metrics({**scalars, "epoch": float(epoch)}, step=self.global_step)
                log.info("epoch %d  loss %.4f  lambda %.2f  %.0f samples/s\n%s", epoch, stats["train/loss"],
                         stats["train/lambda"], stats["train/samples_per_s"],
                         format_metrics_table(metrics, self.classes, f"validation, epoch {epoch}"))
                self.history.append({"epoch": epoch, **stats, **scalars})
                if self.report is not None:
                    self.report(epoch, {**scalars, **stats, "epoch": epoch})
                value = float(metrics[cfg.train.best_metric])
                if self._is_better(value):
                    improved = True
                    self.best = {"tag": epoch_tag(epoch), "epoch": epoch, "metric": cfg.train.best_metric,
                                 "value": value}
            if improved or (epoch + 1) % cfg.train.checkpoint_every == 0 or epoch == last:
                self.save_checkpoint(epoch)
        from .finish import finish

        return finish(self)

    def cleanup(self, status: str = "FINISHED") -> None:
        if self.logger is not None:
            self.logger.close(status)
