"""The VLM recipe: LoRA fine-tuning of Qwen2.5-VL on image-description pairs, under DeepSpeed.

    from mmlnb_dist.config import load_config
    from mmlnb_dist.core.recipe import run
    from mmlnb_dist.recipes.vlm.finetune import FinetuneVLMRecipe
    cfg = load_config("launch/profiles/cpu-demo.yaml", ["vlm.pairs=shards/demo", "vlm.max_steps=50"])
    out = run(FinetuneVLMRecipe, cfg)
    out["adapter_dir"], out["train/loss"], out["val/loss"]

One process, `deepspeed --num_gpus N`, `torchrun` or several nodes: the process group comes from the launcher's
variables (`DistEnv.from_environment`). ZeRO 0-3 (with CPU offload) come from `distributed.*`, or a DeepSpeed
JSON (`distributed.deepspeed_config=launch/deepspeed/vlm_zero3.json`) whose batch keys are re-derived.

Data order and randomness depend on the optimizer step alone (`batches.py`): a run killed after a checkpoint and
resumed with `run.resume=true` ends with the adapter of an uninterrupted run, bit for bit (LoRA dropout included).
The pairs of a step do not depend on the number of processes either, so a run may resume on another one (2 -> 1,
1 -> 2): `core.checkpoint` re-partitions the LoRA and optimizer state, the global batch stays
`vlm.global_batch_size` (accumulation recomputed), and with the same micro batch each micro batch draws the same
dropout masks; `data_order.jsonl` records the pair keys of every optimizer step.
Checkpoints are written every `vlm.checkpoint_every` steps; a fresh start on a folder that holds checkpoints is
refused (pass run.resume=true, or choose another run.name), and a resume may only change the keys listed in
`resume_may_change` (core.recipe compares the stored config.yaml). The learning rate follows `vlm.lr_schedule`
(warmup, then cosine); a step's loss is the mean over its answer tokens (`batches.token_weights`). Outputs in
`<run.output_dir>/<run.name>/`: `adapter/` (peft, safetensors; gathered across ZeRO-3 ranks, `adapter.py`),
`checkpoints/` (DeepSpeed, frozen base weights excluded, step, loss window and RNG states in the client state),
`metrics.jsonl`, `data_order.jsonl` (step, world size, pair keys), `config.yaml`, `result.json`; with
`vlm.keep_best`, `adapter/` is the best validation's and `adapter-last/` the last step's (`best.py`).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np
import torch

from ...core.checkpoint import CheckpointManager, step_tag
from ...core.config import save_config
from ...core.distributed import DistEnv, all_gather_object, all_reduce_sum
from ...core.divergence import LossWatch
from ...core.engine import OptimizerSpec, build_engine, deepspeed_config, precision_of, seed_everything
from ...core.errors import ConfigError
from ...core.progress import progress_bar
from ...core.recipe import FINAL_REPORT, Report
from ...core.schedule import planned_group_lrs, schedule_figure
from ...core.signals import GracefulStop
from ...core.tracking import build_logger, recorded_config
from ...data.preflight import check_shard_files
from ...data.shardset import ShardError, ShardSet
from . import model as V
from .adapter import clear_unfinished_saves, save_adapter, trainable_state_dict  # noqa: F401  (trainable_state_dict: public here too)
from .batches import (Pair, check_resume_length, count_pairs, pair_encoder, read_pairs,  # noqa: F401
                      step_indices, step_seed, token_weights, total_steps, truncate_data_order, vlm_batch_plan)
from .best import LAST_ADAPTER, BestAdapter, check_keep_best, check_keep_best_resume
from .config import check_part_rates_config
from .deepspeed_configs import SHIPPED_DEEPSPEED, shipped_deepspeed_configs  # noqa: F401  (public here too)
from .pair_lengths import pair_counts, pair_sizes
from .preflight import check_finetune_model
from .source import check_vlm_loadable
from .weights_identity import check_resumed_base, record_base

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger(__name__)
STAGE = "finetune-vlm"
DATA_ORDER = "data_order.jsonl"


def require_one_batch(n_pairs: int, global_batch: int, pairs_dir: Path) -> None:
    if n_pairs < global_batch:
        raise ConfigError(f"vlm.global_batch_size: {global_batch} pairs per step, but vlm.pairs ({pairs_dir}) has "
                          f"{n_pairs} training pairs with descriptions; lower vlm.global_batch_size to at most "
                          f"{n_pairs} or fine-tune on more pairs")


class FinetuneVLMRecipe:
    """setup -> train (validate, save_checkpoint inside) -> save the adapter -> cleanup."""

    name = "vlm"
    result_sections = ("run", "distributed", "vlm")
    """The sections this recipe reads; `data`, `train`, `fusion`... may differ on resume (core.recipe)."""
    resume_may_change = ("vlm.max_steps", "vlm.epochs", "vlm.log_every", "vlm.eval_every", "vlm.checkpoint_every",
                         "vlm.generation.*", "vlm.cache_dir", "run.cache_dir", "vlm.model")
    """Train longer, log, validate or checkpoint at another cadence; describe's generation settings; where the tiny
    model is cached; the base's name for the same weight bytes (`check_resumed_base` refuses others). Under keep_best,
    `check` refuses a changed vlm.eval_every (the validations pick the adapter; `best.check_keep_best_resume`)."""
    schedule_lengths = (("vlm.lr_schedule", ("vlm.epochs", "vlm.max_steps")),)
    """A resume that trains longer under the cosine schedule stretches it: `core.recipe` warns."""

    def __init__(self, cfg: "Config", env: DistEnv, report: Optional[Report] = None):
        self.cfg, self.env, self.report = cfg, env, report
        self.run_dir = Path(cfg.run.dir)
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", env, keep=2)
        self.step = 0
        self.loss_window: List[float] = []  # train losses since the last logged one (checkpointed)
        self.last_train: Dict[str, float] = {}
        self.engine = None
        self.logger = None
        lrs = {f"vlm.{k}": getattr(cfg.vlm, k) for k in ("lr", "merger_lr", "vision_lr")}
        self.watch = LossWatch(env, {k: v for k, v in lrs.items() if v is not None}, cfg.distributed)
        """A non-finite loss or trained weight stops fine-tuning at that step, before anything of it is saved."""
        self.best = BestAdapter(self.run_dir, env, self.save_adapter) if cfg.vlm.keep_best else None

    @classmethod
    def reads(cls, cfg: "Config") -> List[Any]:
        """Folders read throughout the run, held with a shared lock (`core.recipe.run`)."""
        return [cfg.vlm.pairs]

    @classmethod
    def trained_on(cls, cfg: "Config") -> Dict[str, List[Dict[str, Any]]]:
        """The pairs, as tracking records them (`core.recipe.run` refuses a resume on a set rebuilt since)."""
        return {STAGE: ShardSet.open(cfg.vlm.pairs).dataset_specs()}

    @classmethod
    def check_config(cls, cfg: "Config", world_size: int) -> None:
        """Problems in the config alone (no data read, no model looked up): `check` starts with them; `config
        validate` and the pipeline's start call them, before any stage."""
        vlm_batch_plan(cfg, world_size)
        check_keep_best(cfg)
        check_part_rates_config(cfg.vlm)
        if cfg.distributed.deepspeed_config:
            from ...core.engine import read_user_deepspeed_json

            read_user_deepspeed_json(cfg.distributed.deepspeed_config)

    @classmethod
    def check(cls, cfg: "Config", env: DistEnv) -> None:
        """Config problems found before any work; creates nothing on disk (core.recipe.run takes the folder after)."""
        vcfg = cfg.vlm
        cls.check_config(cfg, env.world_size)
        plan = vlm_batch_plan(cfg, env.world_size)
        check_vlm_loadable(vcfg.model, "vlm.model")
        try:
            pairs = ShardSet.open(vcfg.pairs)
        except ShardError as err:  # name the key to change
            raise ShardError(f"vlm.pairs: {err}") from None
        pairs.require_split("train", "image-description pairs to fine-tune on")
        check_shard_files(pairs, cfg.data.loader.preflight, rank=env.rank, world_size=env.world_size)
        train_sizes, val_sizes = pair_sizes(pairs, "train"), pair_sizes(pairs, "val", vcfg.val_max_samples)
        n_train = len(train_sizes)
        require_one_batch(n_train, plan.global_batch, vcfg.pairs)
        if vcfg.eval_every and not val_sizes:  # (as the HF Trainer refuses step eval without a set)
            asked, remedy = ((" with vlm.keep_best=true", "vlm.keep_best=false and vlm.eval_every=null")
                             if vcfg.keep_best else ("", "vlm.eval_every=null"))
            raise ConfigError(f"vlm.eval_every={vcfg.eval_every}{asked}: {vcfg.pairs} has no val pairs to compute a "
                              f"validation loss on; set {remedy} or build the set with a val split")
        check_keep_best_resume(cfg, total_steps(vcfg, n_train))
        ckpts = CheckpointManager(Path(cfg.run.dir) / "checkpoints", env)
        ckpts.check_fresh_start(cfg.run.resume)
        check_resumed_base(vcfg, Path(cfg.run.dir), bool(cfg.run.resume and ckpts.latest()))
        check_resume_length(vcfg, total_steps(vcfg, n_train), ckpts.latest() if cfg.run.resume else None)
        # LoRA names, rates, prompt and length (at each image size): on the model's structure, before the folder
        check_finetune_model(vcfg, train_sizes + val_sizes)

    # -- setup ------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, env, vcfg = self.cfg, self.env, self.cfg.vlm
        seed_everything(cfg.run.seed)  # the same on every rank: identical LoRA initialisation
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if env.is_main:
            clear_unfinished_saves(self.run_dir)  # a save killed mid-way: its hidden staging folders
        pairs = ShardSet.open(vcfg.pairs)
        self.train_pairs = read_pairs(pairs, "train")
        self.val_pairs = read_pairs(pairs, "val")[: vcfg.val_max_samples]
        self.plan = vlm_batch_plan(cfg, env.world_size)
        require_one_batch(len(self.train_pairs), self.plan.global_batch, vcfg.pairs)  # setup without check()
        self.steps_per_epoch = len(self.train_pairs) // self.plan.global_batch
        self.total_steps = total_steps(vcfg, len(self.train_pairs))

        ds = deepspeed_config(cfg.distributed, self.plan, on_cpu=env.device.type == "cpu")
        self.dtype = V.dtype_for(precision_of(ds))
        # ZeRO-3 on a real checkpoint: HfDeepSpeedConfig makes from_pretrained build the model already
        # partitioned (zero.Init), so no rank ever holds all 7B weights. The reference must outlive loading.
        self._hf_ds = None
        if ds.get("zero_optimization", {}).get("stage", 0) == 3 and vcfg.model != V.TINY:
            from transformers.integrations import HfDeepSpeedConfig

            self._hf_ds = HfDeepSpeedConfig(ds)
        # Timed apart: on first use `tiny` is built (a distilled tower: about 16 s; by `check`'s preflight, or here),
        # which the pipeline report shows inside the stage's wall time so the build is not read as fine-tuning.
        self.base_path = V.resolve_model_path(vcfg.model, vcfg.tiny_seed, vcfg.cache_dir, vcfg.tiny_vision)
        self.base_model_seconds = V.BUILD_SECONDS.pop(self.base_path, 0.0)  # here, or in `check` (preflight) before
        model, self.processor = V.load_vlm(self.base_path, min_pixels=vcfg.min_pixels, max_pixels=vcfg.max_pixels,
                                           dtype=self.dtype)
        model.config.use_cache = False
        if vcfg.gradient_checkpointing:
            # Non-reentrant checkpointing needs no input grads and works with frozen embeddings under ZeRO-3.
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model = V.apply_lora(model, vcfg.lora)
        trainable, total = V.count_trainable(model)
        groups = V.param_groups(model, vcfg.lr, vcfg.merger_lr, vcfg.vision_lr)
        self.built = build_engine(model, groups, optimizer=OptimizerSpec("adamw", vcfg.lr), schedule=vcfg.lr_schedule,
                                  total_steps=self.total_steps, plan=self.plan, dist=cfg.distributed, env=env,
                                  ds_config=ds)
        self.engine = self.built.engine
        self.model = model
        self.pad_id = self.processor.tokenizer.pad_token_id
        self.encode = pair_encoder(self.processor, vcfg, len(self.train_pairs) + len(self.val_pairs))
        data_counts = pair_counts(self.processor, vcfg, {"train": self.train_pairs, "val": self.val_pairs})
        self.logger = build_logger(cfg.tracking, cfg.run, env.rank, self.run_dir, STAGE, config=cfg,
                                   datasets=pairs.dataset_specs(), tags={"recipe": self.name})
        if self.logger.wants_figures:
            lrs = planned_group_lrs(self.built.schedule, self.total_steps)  # merger/vision groups at their rates
            self.logger.log_figure(schedule_figure(lrs, "VLM learning-rate schedule"), "lr_schedule.png")
        if env.is_main:
            save_config(recorded_config(cfg), self.run_dir / "config.yaml")  # core.recipe compares it on resume
            record_base(vcfg, self.run_dir)  # (`check_resumed_base` compares it on resume)
        # Frozen base weights are not in the checkpoint (excluded at save): load non-strictly.
        client = self.checkpoints.resume(self.engine, cfg.run.resume, strict=False)
        if client:
            self.step = int(client["step"])
            self.loss_window = list(client.get("loss_window", []))
            self.last_train = dict(client.get("last_train", {}))
            log.info("continuing at step %d", self.step)
            self._note_world_size_change()
        if self.best is not None:
            self.best.restore(self.step if client else None)
        if cfg.run.resume:  # what the killed process logged after its checkpoint is logged again from here
            self.logger.resumed_at(self.step if client else -1)
        if not client:
            self.logger.log_metrics({"params/trainable": float(trainable), "params/total": float(total),
                                     **data_counts}, step=0)
        if env.is_main:
            truncate_data_order(self.run_dir / DATA_ORDER, self.step)

    def _note_world_size_change(self) -> None:
        """Tag the tracked run when it continues on another number of processes (core.checkpoint logs how)."""
        saved = self.checkpoints.loaded_layout
        if saved is not None and saved.world_size != self.env.world_size:
            self.logger.set_tags({"resumed_world_size": f"{saved.world_size}->{self.env.world_size}"})
            log.info("global batch %d kept: %d pairs x %d accumulation x %d processes", self.plan.global_batch,
                     self.plan.micro_batch, self.plan.accumulation, self.env.world_size)

    # -- batches ----------------------------------------------------------------------------------------------
    def _to_device(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        batch = {k: t.to(self.env.device) for k, t in batch.items()}
        batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        return batch

    def rank_indices(self, step: int) -> List[int]:
        """This rank's contiguous slice of global batch `step` (the batch itself is the same on any world size)."""
        idx = step_indices(len(self.train_pairs), self.plan.global_batch, step, self.cfg.run.seed)
        per_rank = self.plan.micro_batch * self.plan.accumulation
        return idx[self.env.rank * per_rank:(self.env.rank + 1) * per_rank]

    def micro_batches(self, step: int) -> List[Dict[str, torch.Tensor]]:
        """This rank's micro batches of optimizer step `step`."""
        mine = self.rank_indices(step)
        out = []
        for i in range(0, len(mine), self.plan.micro_batch):
            enc = self.encode([self.train_pairs[j] for j in mine[i:i + self.plan.micro_batch]])
            out.append(self._to_device(V.collate(enc, self.pad_id, "right")))
        return out

    # -- train / validate -------------------------------------------------------------------------------------
    def train(self) -> Dict[str, Any]:
        """Fine-tune, validate, checkpoint and save the adapter; returns run_dir, adapter_dir and final losses."""
        train_metrics = self._train_steps()
        val_metrics = self._log_val()
        self.save_checkpoint()
        last_dir = self.save_adapter(self.run_dir / LAST_ADAPTER if self.best else None)
        adapter_dir = self.best.publish(last_dir) if self.best else last_dir  # keep_best: the best validation's adapter
        result = {"run_dir": str(self.run_dir), "adapter_dir": str(adapter_dir), "step": self.step,
                  "base_model": self.base_path, "base_model_seconds": self.base_model_seconds,
                  **train_metrics, **val_metrics}  # with keep_best, val_metrics holds best/val_loss and best/step
        if self.best is not None:
            result["adapter_last_dir"] = str(last_dir)
            if self.best.record is not None:
                result["best/step"] = self.best.record["step"]
        if self.env.is_main:
            (self.run_dir / "result.json").write_text(json.dumps(result, indent=2))
        return result

    def _train_steps(self) -> Dict[str, float]:
        vcfg = self.cfg.vlm
        self.engine.train()
        bar = progress_bar(total=self.total_steps, initial=self.step, desc=STAGE, enabled=self.env.is_main,
                           dynamic_ncols=True)
        with GracefulStop() as stop:  # a SIGTERM (time limit, preemption) stops at a step, with its checkpoint
            while self.step < self.total_steps:
                self._train_step(vcfg, bar, stop)
        bar.close()
        return self.last_train

    def _train_step(self, vcfg, bar, stop: GracefulStop) -> None:
        """One optimizer step: its micro batches, logging, validation and checkpoint as configured, and the stop
        every rank agrees on when one was sent SIGTERM."""
        losses, batches = [], self.micro_batches(self.step)
        weights = token_weights(self.env, batches, self.plan.accumulation)  # every answer token weighs the same
        lr = self.built.lr()  # the rate this step trains at: DeepSpeed's step advances the schedule after it
        for i, batch in enumerate(batches):
            # Dropout masks from a seed of (run.seed, step, micro batch's place in the global batch): independent
            # of the run's history and, for a given micro batch size, of the number of processes.
            seed_everything(step_seed(self.cfg.run.seed, self.step, self.env.rank * self.plan.accumulation + i))
            loss = self.engine(**batch).loss
            self.engine.backward(loss * weights[i])
            self.engine.step()
            losses.append(loss.detach().float() * weights[i])
        # the step's token mean over all ranks: not finite when one micro batch is, and the same on every rank
        step_loss = all_reduce_sum(self.env, torch.stack(losses).sum().reshape(1) / self.plan.accumulation).item() \
            / self.env.world_size
        self.watch.see(step_loss)
        step, every = self.step + 1, (vcfg.checkpoint_every, vcfg.eval_every)
        saved = step == self.total_steps or stop.requested or any(n and step % n == 0 for n in every)
        self.watch.step_done(self.engine.was_step_applied(), f"at step {step}", self.engine.module if saved else None)
        self._record_data_order(self.step)
        self.step += 1
        self.loss_window.append(step_loss)
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}")
        if self.step % vcfg.log_every == 0 or self.step == self.total_steps:
            self.last_train = {"train/loss": float(np.mean(self.loss_window)),
                               "train/epoch": self.step / self.steps_per_epoch, "train/lr": lr}
            self.loss_window = []
            self.logger.log_metrics(self.last_train, step=self.step)
        if vcfg.eval_every and self.step % vcfg.eval_every == 0 and self.step < self.total_steps:
            self._log_val()
        periodic = bool(vcfg.checkpoint_every) and self.step % vcfg.checkpoint_every == 0
        if periodic and self.step < self.total_steps:
            self.save_checkpoint()
        if self.step < self.total_steps:
            stop.stop_if_asked(self.env, None if periodic else self.save_checkpoint, f"at step {self.step}")

    def _record_data_order(self, step: int) -> None:
        """Append the pair keys of optimizer step `step` (every rank's slice, in rank order) to data_order.jsonl."""
        keys = all_gather_object(self.env, [self.train_pairs[j].key for j in self.rank_indices(step)])
        if self.env.is_main:
            record = {"step": step, "world_size": self.env.world_size, "keys": [k for part in keys for k in part]}
            with open(self.run_dir / DATA_ORDER, "a") as f:
                f.write(json.dumps(record) + "\n")

    def _log_val(self) -> Dict[str, float]:
        metrics = self.validate()
        if self.best is not None:  # every rank: a new best saves the adapter (collective)
            metrics = {**metrics, **self.best.see(self.step, metrics)}
        self.logger.log_metrics(metrics, step=self.step)
        if self.report:
            self.report(self.step, {**metrics, FINAL_REPORT: float(self.step >= self.total_steps)})
        return metrics

    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        """Token-weighted answer loss over the val split, each pair on exactly one rank.

        Every rank runs the same number of forward passes (ZeRO-3 gathers parameters collectively, so a rank
        with fewer batches would hang the others); short ranks pad with a pair whose labels are all ignored.
        """
        if not self.val_pairs:
            return {}
        was_training = self.engine.training
        self.engine.eval()
        mine = list(range(self.env.rank, len(self.val_pairs), self.env.world_size))
        per_rank = math.ceil(len(self.val_pairs) / self.env.world_size)
        n_batches = math.ceil(per_rank / self.plan.micro_batch)
        totals = torch.zeros(2, dtype=torch.float64)
        for b in range(n_batches):
            chunk = mine[b * self.plan.micro_batch:(b + 1) * self.plan.micro_batch]
            enc = self.encode([self.val_pairs[i] for i in chunk] or [self.val_pairs[0]])
            if not chunk:  # a copy: encodings may be cached
                enc = [dataclasses.replace(e, labels=[V.IGNORE_INDEX] * len(e.labels)) for e in enc]
            batch = self._to_device(V.collate(enc, self.pad_id, "right"))
            loss = self.engine(**batch).loss
            n_tok = int((batch["labels"][:, 1:] != V.IGNORE_INDEX).sum())
            if n_tok:
                totals += torch.tensor([loss.float().item() * n_tok, n_tok], dtype=torch.float64)
        all_reduce_sum(self.env, totals)
        if was_training:
            self.engine.train()
        return {"val/loss": float(totals[0] / max(totals[1], 1.0))}

    def evaluate(self, split: str = "val") -> Dict[str, float]:
        """The answer loss on the validation pairs (the only split this recipe evaluates)."""
        if split != "val":
            raise ValueError(f"the VLM recipe evaluates the val split only (asked: {split})")
        return self.validate()

    # -- saving -----------------------------------------------------------------------------------------------
    def save_checkpoint(self) -> str:
        """A resumable checkpoint (LoRA + optimizer + schedule + step + RNG), frozen base weights excluded.
        Collective: every rank calls it."""
        client = {"step": self.step, "loss_window": self.loss_window, "last_train": self.last_train}
        return self.checkpoints.save(self.engine, step_tag(self.step), client, exclude_frozen_parameters=True)

    def save_adapter(self, out_dir: Optional[Path] = None) -> Path:
        """The adapter in peft format. Collective: under ZeRO-3 every rank must join the gather."""
        out_dir = Path(out_dir or self.run_dir / "adapter")
        save_adapter(self.model, out_dir, self.env, base_path=self.base_path)
        return out_dir

    def cleanup(self, status: str = "FINISHED") -> None:
        if self.logger is not None:
            self.logger.close(status)

