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

Data order: the pairs of a shard set's train split are few (NBITP: 1,500) and are held in memory as encoded
bytes. Step `s` of epoch `e` takes global batch `s` of a permutation seeded by (run.seed, e), every rank its own
contiguous slice: so a resumed run continues on exactly the batches it would have seen.

The learning rate follows `vlm.lr_schedule` (linear warmup, then cosine, by default) over all optimizer steps.

Outputs in `<run.output_dir>/<run.name>/`: `adapter/` (peft format, safetensors; gathered across ZeRO-3 ranks),
`checkpoints/` (DeepSpeed, frozen base weights excluded, step and RNG states in the client state),
`metrics.jsonl`, `config.yaml`, `result.json`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np
import torch

from ...core.checkpoint import CheckpointManager, step_tag
from ...core.config import save_config
from ...core.distributed import DistEnv, all_reduce_sum, barrier, plan_batch
from ...core.engine import OptimizerSpec, build_engine, deepspeed_config, precision_of, seed_everything
from ...core.recipe import Report
from ...core.schedule import planned_lrs, schedule_figure
from ...core.tracking import build_logger
from ...data.images import image_member
from ...data.reader import iter_shard_samples
from ...data.shardset import ShardSet
from . import model as V

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger(__name__)
STAGE = "finetune-vlm"


# ---------------------------------------------------------------------------------------------------------
# Pairs
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    key: str
    image: bytes
    text: str
    label: str


def read_pairs(shards: ShardSet, split: str) -> List[Pair]:
    """Every (image, description) pair of one split, in manifest order; samples without `txt` are skipped."""
    if split not in shards.manifest["splits"]:
        return []
    classes = shards.classes
    pairs = []
    for path, _ in shards.shards(split):
        for s in iter_shard_samples(path):
            text = s.get("txt", b"").decode("utf-8").strip()
            ext = image_member(s)
            if not text or ext is None:
                continue
            pairs.append(Pair(s["__key__"], s[ext], text, classes[int(s["cls"])]))
    return pairs


def step_indices(n: int, global_batch: int, step: int, seed: int) -> List[int]:
    """Indices of global batch `step` (counted across epochs; the last partial batch of an epoch is dropped)."""
    per_epoch = n // global_batch
    epoch, within = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[within * global_batch:(within + 1) * global_batch].tolist()


# ---------------------------------------------------------------------------------------------------------
# DeepSpeed configs shipped in launch/deepspeed/ (generated from the config; a test checks they match)
# ---------------------------------------------------------------------------------------------------------

SHIPPED_DEEPSPEED = {
    "vlm_zero2.json": dict(zero_stage=2, offload_optimizer=False, offload_params=False),
    "vlm_zero3.json": dict(zero_stage=3, offload_optimizer=False, offload_params=False),
    "vlm_zero3_offload.json": dict(zero_stage=3, offload_optimizer=True, offload_params=True),
}


def shipped_deepspeed_configs(cfg: "Config") -> Dict[str, Dict[str, Any]]:
    """The JSONs of launch/deepspeed/vlm_*.json for `cfg` (the rtx4090 profile: bf16, 16 = 4 x 4 on 1 GPU)."""
    out = {}
    for name, zero in SHIPPED_DEEPSPEED.items():
        dcfg = cfg.distributed.model_copy(update=zero)
        plan = plan_batch(cfg.vlm.global_batch_size, 1, cfg.vlm.micro_batch_per_gpu or dcfg.micro_batch_per_gpu,
                          key="vlm.global_batch_size")
        out[name] = deepspeed_config(dcfg, plan)
    return out


# ---------------------------------------------------------------------------------------------------------
# The recipe
# ---------------------------------------------------------------------------------------------------------

class FinetuneVLMRecipe:
    """setup -> train (validate, save_checkpoint inside) -> save the adapter -> cleanup."""

    name = "vlm"

    def __init__(self, cfg: "Config", env: DistEnv, report: Optional[Report] = None):
        self.cfg, self.env, self.report = cfg, env, report
        self.run_dir = Path(cfg.run.dir)
        self.checkpoints = CheckpointManager(self.run_dir / "checkpoints", env, keep=2)
        self.step = 0
        self.engine = None
        self.logger = None
        self._enc_cache: Dict[str, V.Encoded] = {}

    @classmethod
    def check(cls, cfg: "Config", env: DistEnv) -> None:
        """Config problems found before any work (no folder is created before these pass)."""
        vcfg = cfg.vlm
        micro = vcfg.micro_batch_per_gpu or cfg.distributed.micro_batch_per_gpu
        plan_batch(vcfg.global_batch_size, env.world_size, micro, key="vlm.global_batch_size")
        ShardSet.open(vcfg.pairs).require_split("train", "image-description pairs to fine-tune on")
        if cfg.distributed.deepspeed_config:
            from ...core.engine import read_user_deepspeed_json

            read_user_deepspeed_json(cfg.distributed.deepspeed_config)

    # -- setup ------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        from ...core.errors import UserError

        cfg, env, vcfg = self.cfg, self.env, self.cfg.vlm
        seed_everything(cfg.run.seed + env.rank)  # dropout masks differ per rank
        self.run_dir.mkdir(parents=True, exist_ok=True)
        pairs = ShardSet.open(vcfg.pairs)
        self.train_pairs = read_pairs(pairs, "train")
        self.val_pairs = read_pairs(pairs, "val")[: vcfg.val_max_samples]
        micro = vcfg.micro_batch_per_gpu or cfg.distributed.micro_batch_per_gpu
        self.plan = plan_batch(vcfg.global_batch_size, env.world_size, micro, key="vlm.global_batch_size")
        if len(self.train_pairs) < self.plan.global_batch:
            raise UserError(f"vlm.pairs: {vcfg.pairs} has {len(self.train_pairs)} training pairs with descriptions, "
                            f"fewer than one global batch of {self.plan.global_batch} (vlm.global_batch_size)")
        self.steps_per_epoch = len(self.train_pairs) // self.plan.global_batch
        self.total_steps = vcfg.max_steps or vcfg.epochs * self.steps_per_epoch

        ds = deepspeed_config(cfg.distributed, self.plan, on_cpu=env.device.type == "cpu")
        self.dtype = V.dtype_for(precision_of(ds))
        # ZeRO-3 on a real checkpoint: HfDeepSpeedConfig makes from_pretrained build the model already
        # partitioned (zero.Init), so no rank ever holds all 7B weights. The reference must outlive loading.
        self._hf_ds = None
        if ds.get("zero_optimization", {}).get("stage", 0) == 3 and vcfg.model != V.TINY:
            from transformers.integrations import HfDeepSpeedConfig

            self._hf_ds = HfDeepSpeedConfig(ds)
        model, self.processor = V.load_vlm(
            vcfg.model, min_pixels=vcfg.min_pixels, max_pixels=vcfg.max_pixels, dtype=self.dtype,
            seed=vcfg.tiny_seed, cache_dir=vcfg.cache_dir,
        )
        model.config.use_cache = False
        if vcfg.gradient_checkpointing:
            # Non-reentrant checkpointing needs no input grads and works with frozen embeddings under ZeRO-3.
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model = V.apply_lora(model, vcfg.lora)
        self.base_path = V.resolve_model_path(vcfg.model, vcfg.tiny_seed, vcfg.cache_dir)
        trainable, total = V.count_trainable(model)
        self.built = build_engine(model, None, optimizer=OptimizerSpec("adamw", vcfg.lr), schedule=vcfg.lr_schedule,
                                  total_steps=self.total_steps, plan=self.plan, dist=cfg.distributed, env=env,
                                  ds_config=ds)
        self.engine = self.built.engine
        self.model = model
        self.pad_id = self.processor.tokenizer.pad_token_id
        self.logger = build_logger(cfg.tracking, cfg.run, env.rank, self.run_dir, STAGE, config=cfg,
                                   datasets=pairs.dataset_specs(), tags={"recipe": self.name})
        self.logger.log_metrics({"params/trainable": float(trainable), "params/total": float(total),
                                 "data/train_pairs": float(len(self.train_pairs))}, step=0)
        if self.logger.wants_figures:
            lrs = planned_lrs(vcfg.lr_schedule, self.total_steps, vcfg.lr)
            self.logger.log_figure(schedule_figure(lrs, "VLM learning-rate schedule"), "lr_schedule.png")
        if env.is_main:
            save_config(cfg, self.run_dir / "config.yaml")
        # Frozen base weights are not in the checkpoint (excluded at save): load non-strictly.
        client = self.checkpoints.resume(self.engine, cfg.run.resume, strict=False)
        if client:
            self.step = int(client["step"])
            log.info("continuing at step %d", self.step)

    # -- batches ----------------------------------------------------------------------------------------------
    ENCODE_CACHE_BYTES = 1 << 30
    """Encoded pairs are kept in memory when the whole split fits in this much (images are not augmented, so
    the processor's resize/normalise/patchify of a pair never changes; on small models it dominates a step)."""

    def _encode(self, pairs: List[Pair]) -> List[V.Encoded]:
        v = self.cfg.vlm
        cache = self._enc_cache
        out = []
        for p in pairs:
            enc = cache.get(p.key)
            if enc is None:
                enc = V.encode_pair(self.processor, p.image, v.prompt, p.text, v.max_length)
                n_pairs = len(self.train_pairs) + len(self.val_pairs)
                if enc.pixel_values.numel() * enc.pixel_values.element_size() * n_pairs <= self.ENCODE_CACHE_BYTES:
                    cache[p.key] = enc
            out.append(enc)
        return out

    def _to_device(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        batch = {k: t.to(self.env.device) for k, t in batch.items()}
        batch["pixel_values"] = batch["pixel_values"].to(self.dtype)
        return batch

    def micro_batches(self, step: int) -> List[Dict[str, torch.Tensor]]:
        """This rank's micro batches of optimizer step `step`."""
        idx = step_indices(len(self.train_pairs), self.plan.global_batch, step, self.cfg.run.seed)
        per_rank = self.plan.micro_batch * self.plan.accumulation
        mine = idx[self.env.rank * per_rank:(self.env.rank + 1) * per_rank]
        out = []
        for i in range(0, len(mine), self.plan.micro_batch):
            enc = self._encode([self.train_pairs[j] for j in mine[i:i + self.plan.micro_batch]])
            out.append(self._to_device(V.collate(enc, self.pad_id, "right")))
        return out

    # -- train / validate -------------------------------------------------------------------------------------
    def train(self) -> Dict[str, Any]:
        """Fine-tune, validate, checkpoint and save the adapter; returns run_dir, adapter_dir and final losses."""
        train_metrics = self._train_steps()
        val_metrics = self._log_val()
        self.save_checkpoint()
        adapter_dir = self.save_adapter()
        result = {"run_dir": str(self.run_dir), "adapter_dir": str(adapter_dir), "step": self.step,
                  "base_model": self.base_path, **train_metrics, **val_metrics}
        if self.env.is_main:
            (self.run_dir / "result.json").write_text(json.dumps(result, indent=2))
        return result

    def _train_steps(self) -> Dict[str, float]:
        from tqdm import tqdm

        vcfg = self.cfg.vlm
        self.engine.train()
        last: Dict[str, float] = {}
        window: List[float] = []
        bar = tqdm(total=self.total_steps, initial=self.step, desc=STAGE, disable=not self.env.is_main,
                   dynamic_ncols=True)
        while self.step < self.total_steps:
            losses = []
            for batch in self.micro_batches(self.step):
                loss = self.engine(**batch).loss
                self.engine.backward(loss)
                self.engine.step()
                losses.append(loss.detach().float())
            self.step += 1
            step_loss = all_reduce_sum(self.env, torch.stack(losses).mean().reshape(1)).item() / self.env.world_size
            window.append(step_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.3f}")
            if self.step % vcfg.log_every == 0 or self.step == self.total_steps:
                last = {"train/loss": float(np.mean(window)), "train/epoch": self.step / self.steps_per_epoch,
                        "train/lr": self.built.lr()}
                window = []
                self.logger.log_metrics(last, step=self.step)
            if vcfg.eval_every and self.step % vcfg.eval_every == 0 and self.step < self.total_steps:
                self._log_val()
            if vcfg.checkpoint_every and self.step % vcfg.checkpoint_every == 0 and self.step < self.total_steps:
                self.save_checkpoint()
        bar.close()
        return last

    def _log_val(self) -> Dict[str, float]:
        metrics = self.validate()
        self.logger.log_metrics(metrics, step=self.step)
        if self.report:
            self.report(self.step, metrics)
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
            enc = self._encode([self.val_pairs[i] for i in chunk] or [self.val_pairs[0]])
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
        return self.checkpoints.save(self.engine, step_tag(self.step), {"step": self.step},
                                     exclude_frozen_parameters=True)

    def save_adapter(self, out_dir: Optional[Path] = None) -> Path:
        """The adapter in peft format. Collective: under ZeRO-3 every rank must join the gather."""
        out_dir = Path(out_dir or self.run_dir / "adapter")
        save_adapter(self.model, out_dir, self.env, base_path=self.base_path)
        return out_dir

    def cleanup(self, status: str = "FINISHED") -> None:
        if self.logger is not None:
            self.logger.close(status)


def trainable_state_dict(model: torch.nn.Module, env: DistEnv) -> Dict[str, torch.Tensor]:
    """Full copies of every trainable tensor (LoRA A/B and modules_to_save), on rank 0; {} elsewhere.

    Under ZeRO-3 each rank holds a shard of every parameter (`p.numel() == 0` locally): GatheredParameters
    materialises them on all ranks, which is why every rank must call this (saving only on rank 0 without the
    gather is what writes the well-known empty adapter).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    partitioned = [p for _, p in named if hasattr(p, "ds_id")]
    state: Dict[str, torch.Tensor] = {}
    if partitioned:
        import deepspeed

        with deepspeed.zero.GatheredParameters(partitioned, modifier_rank=None):
            if env.is_main:
                state = {n: p.detach().cpu().clone() for n, p in named}
    elif env.is_main:
        state = {n: p.detach().cpu().clone() for n, p in named}
    return state


def save_adapter(model, out_dir: Path, env: DistEnv, base_path: Optional[str] = None) -> None:
    """Gather (all ranks) then write the peft adapter (rank 0); refuses to write an empty one."""
    from peft import get_peft_model_state_dict

    state = trainable_state_dict(model, env)
    if env.is_main:
        peft_state = get_peft_model_state_dict(model, state_dict=state)
        if not peft_state or any(t.numel() == 0 for t in peft_state.values()):
            raise RuntimeError("refusing to save an empty LoRA adapter (parameters were not gathered)")
        out_dir.mkdir(parents=True, exist_ok=True)
        if base_path is not None:
            model.peft_config["default"].base_model_name_or_path = base_path
        model.save_pretrained(str(out_dir), state_dict=state, safe_serialization=True)
    barrier(env)
