"""Stage 2 recipe: train the dual-branch MMLNB classifier (encoders + PRMF + heads) with the curriculum loss,
staged freezing and frozen-feature caching, under DeepSpeed (one process, N GPUs, several nodes, or CPU/gloo).

    metrics = run(cfg)                      # what the CLI, the tests and Ray workers call

Per epoch: enter the epoch's freezing phase (freeze encoders, give their optimizer groups lr 0, build
feature caches for frozen encoders), train, evaluate on `val` every `eval_every` epochs, checkpoint. At the
end: reload the best checkpoint (chosen on `val` by `train.best_metric`), evaluate `val` and `test` with it,
export fp32 safetensors for inference.
"""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from ..checkpoint import (apply_retention, epoch_tag, export_model, full_fp32_state_dict, load_checkpoint,
                          read_best, rng_state, save_checkpoint, set_rng_state, write_best)
from ..config import Config, save_config
from ..curriculum import CurriculumState, curriculum_lambda, curriculum_loss, phase_index
from ..distributed import (DistEnv, all_gather_object, all_reduce_sum, barrier, deepspeed_config,
                           init_engine_process_group, plan_batch)
from ..features import FeatureCache, FeatureTable
from ..metrics import format_metrics_table, scalar_metrics
from ..plots import log_evaluation_figures
from ..models.encoders import module_fingerprint
from .fusion_steps import evaluate, fill_caches, prepare_inputs

Report = Callable[[int, Dict[str, float]], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class FusionTrainingRecipe:
    """setup -> train -> (validate, save_checkpoint)* -> cleanup. One instance per run and process."""

    def __init__(self, cfg: Config, env: Optional[DistEnv] = None, report: Optional[Report] = None):
        self.cfg = cfg
        self.env = env
        self.report = report
        self.run_dir = Path(cfg.run.dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.state = CurriculumState()
        self.best: Optional[Dict[str, Any]] = None
        self.global_step = 0
        self.caches: Dict[str, Optional[FeatureCache]] = {"image": None, "text": None}
        self.table: Optional[FeatureTable] = None
        self.history: List[Dict[str, float]] = []
        self._entered_phase: Optional[int] = None

    # -- helpers ---------------------------------------------------------------------------------------------

    def say(self, msg: str) -> None:
        if self.env.is_main:
            from tqdm import tqdm

            tqdm.write(f"[train] {msg}")

    @property
    def model(self):
        return self.engine.module

    # -- setup -----------------------------------------------------------------------------------------------

    def setup(self) -> None:
        import deepspeed

        from ..data.loader import build_loader_from_config
        from ..data.shards import read_manifest
        from ..models import build_classifier
        from ..tracking import build_logger

        cfg = self.cfg
        if self.env is None:
            self.env = DistEnv.from_environment()
        env = self.env
        manifest = read_manifest(cfg.data.shards)
        self.classes = list(manifest["classes"])
        splits = manifest.get("splits", {})
        for split in ("train", "val"):
            if not splits.get(split, {}).get("num_samples"):
                raise ValueError(f"{cfg.data.shards}: the '{split}' split is empty; rebuild the shards with one")
        self.has_test = bool(splits.get("test", {}).get("num_samples"))
        plan = plan_batch(cfg.train.global_batch_size, env.world_size, cfg.distributed.micro_batch_per_gpu)
        self.plan = plan
        if not cfg.run.resume and self.ckpt_dir.exists() and any(self.ckpt_dir.iterdir()):
            raise FileExistsError(
                f"{self.ckpt_dir} already holds checkpoints; pass run.resume=true to continue that run, or choose "
                f"another run.name / run.output_dir"
            )

        init_engine_process_group(env, cfg.distributed)
        seed_everything(cfg.run.seed)  # the same on every rank: identical initial weights
        model = build_classifier(cfg.model, len(self.classes))
        base = None
        if cfg.distributed.deepspeed_config:
            base = json.loads(Path(cfg.distributed.deepspeed_config).read_text())
        ds_cfg = deepspeed_config(cfg.distributed, plan, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                                  optimizer=cfg.train.optimizer, on_cpu=env.device.type == "cpu", base=base)
        # All parameters enter the optimizer (ZeRO partitions them once, at initialisation); freezing later
        # sets requires_grad=False and the group's lr to 0, so a frozen encoder cannot drift on Adam momentum.
        self.engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.param_groups(),
                                                    config=ds_cfg)
        self.dtype = next(self.engine.module.parameters()).dtype

        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            (self.run_dir / "deepspeed_config.json").write_text(json.dumps(ds_cfg, indent=2))
        self.logger = build_logger(cfg, env.rank, self.run_dir, "train",
                                   tags={"recipe": "train_fusion", "world_size": str(env.world_size)})

        eval_bs = cfg.train.eval_batch_size or plan.micro_batch
        self.train_loader = build_loader_from_config(cfg, "train", env.rank, env.world_size, plan.micro_batch,
                                                     "train")
        self.eval_loaders = {s: build_loader_from_config(cfg, s, env.rank, env.world_size, eval_bs, "eval")
                             for s in (["train", "val", "test"] if self.has_test else ["train", "val"])}
        self.say(f"{len(self.classes)} classes {self.classes}; world {env.world_size}; global batch "
                 f"{plan.global_batch} = micro {plan.micro_batch} x accumulation {plan.accumulation} x "
                 f"world {plan.world_size}; ZeRO {cfg.distributed.zero_stage}, {cfg.distributed.precision}")

        self.start_epoch = 0
        if cfg.run.resume:
            self._resume()

    def _resume(self) -> None:
        tag, client = load_checkpoint(self.engine, self.ckpt_dir)
        if tag is None:
            self.say(f"run.resume=true but no checkpoint in {self.ckpt_dir}: starting from epoch 0")
            return
        self.state.load_state_dict(client["curriculum"])
        self.best = client.get("best")
        self.global_step = int(client.get("global_step", 0))
        self.history = list(client.get("history", []))
        set_rng_state(client["rng"][min(self.env.rank, len(client["rng"]) - 1)])
        self.start_epoch = int(client["data_position"]["next_epoch"])
        self.say(f"resumed from {self.ckpt_dir / tag}: continuing at epoch {self.start_epoch}")

    # -- phases and caches -----------------------------------------------------------------------------------

    def enter_phase(self, epoch: int) -> None:
        """Apply the freezing phase of `epoch` (once per phase) and set up caches for frozen encoders."""
        cur = self.cfg.train.curriculum
        index = phase_index(cur, epoch)
        if index == self._entered_phase:
            return
        self._entered_phase = index
        phase = cur.phases[index]
        model = self.model
        model.set_trainable(phase.train_image_encoder, phase.train_text_encoder)
        lrs = {"image_encoder": self.cfg.train.lr if model.image_trainable else 0.0,
               "text_encoder": self.cfg.train.lr if model.text_trainable else 0.0, "heads": self.cfg.train.lr}
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lrs[group["name"]]
        self.state.phase = index
        self.say(f"epoch {epoch}: phase {index} (image encoder {'trains' if model.image_trainable else 'frozen'}, "
                 f"text encoder {'trains' if model.text_trainable else 'frozen'})")
        self._build_caches()

    def _build_caches(self) -> None:
        cfg, model = self.cfg, self.model
        self.caches = {"image": None, "text": None}
        self.table = None
        if not cfg.train.cache_frozen_features:
            return
        directory = (cfg.train.feature_cache_dir or self.run_dir / "feature_cache") if cfg.train.feature_cache == "disk" else None
        lc = cfg.data.loader
        if model.image_encoder is not None and not model.image_trainable:
            if lc.augment:
                self.say("image encoder frozen but data.loader.augment=true: image features are NOT cached "
                         "(random augmentation changes every input)")
            else:
                ident = module_fingerprint(f"{model.image_encoder.name}@{lc.image_size}", model.image_encoder)
                self.caches["image"] = FeatureCache("image", ident, directory)
        if model.text_encoder is not None and not model.text_trainable:
            te = model.text_encoder
            ident = module_fingerprint(f"{te.name}@{te.pooling}@{te.max_length}", te)
            self.caches["text"] = FeatureCache("text", ident, directory)
        active = {k: c for k, c in self.caches.items() if c is not None}
        if not active:
            return
        loaded = {k: c.load() for k, c in active.items()}
        t0 = time.perf_counter()
        keys, labels = fill_caches(model, self.eval_loaders["train"], active, self.env)
        if self.env.is_main:
            for kind, c in active.items():
                if not loaded[kind]:
                    c.save()
        where = f"disk ({directory})" if directory else "memory"
        self.say(f"feature caching ON for {', '.join(f'{k} [{c.identity}]' for k, c in active.items())} in "
                 f"{where}: {len(keys)} train samples in {time.perf_counter() - t0:.1f}s")
        needs_image = model.image_encoder is not None
        needs_text = model.text_encoder is not None
        if (not needs_image or active.get("image")) and (not needs_text or active.get("text")):
            # Every input of the model is cached: train the heads straight from the features.
            self.table = FeatureTable(
                keys, labels, active["image"].stacked(keys) if needs_image else None,
                active["text"].stacked(keys) if needs_text else None,
            )
            self.say("all encoders frozen and cached: training the heads from features (no decoding, no encoders)")

    # -- training --------------------------------------------------------------------------------------------

    def _epoch_batches(self, epoch: int):
        """(iterator of micro batches, count). The count is the same on every rank and a multiple of the
        gradient accumulation, so every optimizer step is complete and no rank waits on another."""
        acc = self.plan.accumulation
        if self.table is not None:
            per_rank = self.train_loader.per_rank
            n = max(acc, (-(-per_rank // self.plan.micro_batch) // acc) * acc)
            return self.table.batches(epoch=epoch, seed=self.cfg.run.seed, rank=self.env.rank,
                                      world_size=self.env.world_size, micro_batch=self.plan.micro_batch,
                                      num_micro_batches=n), n
        self.train_loader.set_epoch(epoch)
        n = (len(self.train_loader) // acc) * acc
        if n == 0:
            raise ValueError(f"an epoch has {len(self.train_loader)} micro batches per rank, fewer than the "
                             f"gradient accumulation {acc}; lower train.global_batch_size")
        return iter(self.train_loader), n

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        from tqdm import tqdm

        cfg, env, engine = self.cfg, self.env, self.engine
        self.enter_phase(epoch)
        # Derived per-epoch seed (dropout etc.): a resumed run replays an epoch exactly without relying on
        # where the RNG stood when the previous process died.
        seed_everything(cfg.run.seed * 100_003 + epoch * 101 + env.rank)
        lam = curriculum_lambda(cfg.train.curriculum, epoch)
        self.state.epoch = epoch
        engine.train()
        batches, n = self._epoch_batches(epoch)
        bar = tqdm(total=n, desc=f"epoch {epoch}", disable=not env.is_main, leave=False, dynamic_ncols=True)
        sums = torch.zeros(4, dtype=torch.float64)  # loss*n, n, alpha sum, alpha count
        t0 = time.perf_counter()
        seen = 0
        for i, batch in zip(range(n), batches):
            label = batch["label"].to(env.device)
            out = engine(**prepare_inputs(self.model, batch, self.caches, env.device))
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
                bar.set_postfix(loss=f"{loss_value:.3f}", lam=f"{lam:.2f}", alpha=f"{alpha:.2f}",
                                sps=f"{rate:.0f}")
                if self.global_step % cfg.train.log_every == 0:
                    self.logger.log_metrics({"train/loss": loss_value, "train/lambda": lam,
                                             "train/alpha_mean": alpha, "train/samples_per_s": rate},
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

    def validate(self, split: str = "val") -> Dict[str, Any]:
        return self._evaluate(split)[0]

    def _evaluate(self, split: str):
        from tqdm import tqdm

        def bar(it):
            return tqdm(it, desc=f"eval {split}", disable=not self.env.is_main, leave=False, dynamic_ncols=True)

        return evaluate(self.model, self.engine, self.eval_loaders[split], self.caches, self.env,
                        self.classes, progress=bar)

    def _curriculum_used(self) -> Dict[str, Any]:
        """The lambda of every epoch this run trained (from its history, so a resumed run shows all of them)."""
        return {"epochs": [h["epoch"] for h in self.history],
                "lambdas": [h["train/lambda"] for h in self.history],
                "phases": [p.model_dump() for p in self.cfg.train.curriculum.phases]}

    def _is_better(self, value: float) -> bool:
        if self.best is None:
            return True
        higher = self.cfg.train.best_metric != "loss"
        return value > self.best["value"] if higher else value < self.best["value"]

    def save_checkpoint(self, epoch: int) -> str:
        client = {
            "curriculum": self.state.state_dict(),
            "best": self.best,
            "global_step": self.global_step,
            "history": self.history,
            "rng": all_gather_object(self.env, rng_state()),
            "data_position": {"next_epoch": epoch + 1, "granularity": "epoch"},
        }
        tag = save_checkpoint(self.engine, self.ckpt_dir, epoch, client)
        barrier(self.env)
        if self.env.is_main:
            if self.best is not None:
                write_best(self.ckpt_dir, self.best)
            protect = [self.best["tag"]] if self.best else []
            apply_retention(self.ckpt_dir, self.cfg.train.keep_checkpoints, protect)
        barrier(self.env)
        return tag

    def train(self) -> Dict[str, Any]:
        cfg = self.cfg
        last = cfg.train.epochs - 1
        for epoch in range(self.start_epoch, cfg.train.epochs):
            stats = self.train_epoch(epoch)
            self.logger.log_metrics(stats, step=self.global_step)
            improved = False
            if (epoch + 1) % cfg.train.eval_every == 0 or epoch == last:
                metrics = self.validate("val")
                scalars = scalar_metrics(metrics, "val/")
                self.logger.log_metrics({**scalars, "epoch": float(epoch)}, step=self.global_step)
                self.say(f"epoch {epoch}  loss {stats['train/loss']:.4f}  lambda {stats['train/lambda']:.2f}  "
                         f"{stats['train/samples_per_s']:.0f} samples/s\n"
                         + format_metrics_table(metrics, self.classes, f"validation, epoch {epoch}"))
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
        return self.finish()

    def finish(self) -> Dict[str, Any]:
        """Reload the best checkpoint, evaluate val and test with it, export it, log figures."""
        env = self.env
        result: Dict[str, Any] = {"run_dir": str(self.run_dir), "world_size": env.world_size}
        best = self.best or read_best(self.ckpt_dir)
        if best is not None:
            load_checkpoint(self.engine, self.ckpt_dir, tag=best["tag"], module_only=True)
            self._entered_phase = None  # caches were built for the last weights: rebuild for the best ones
            self.enter_phase(best["epoch"])
            result.update({"best_epoch": best["epoch"], "best_metric": best["metric"], "best_value": best["value"]})
        for split in ["val"] + (["test"] if self.has_test else []):
            metrics, preds = self._evaluate(split)
            result.update(scalar_metrics(metrics, f"{split}/"))
            result[f"{split}/confusion_matrix"] = metrics["confusion_matrix"]
            result[f"{split}/per_class"] = metrics["per_class"]
            self.logger.log_metrics(scalar_metrics(metrics, f"best/{split}/"), step=self.global_step)
            self.say(format_metrics_table(metrics, self.classes, f"{split} split, best checkpoint"))
            if env.is_main and self.logger.wants_figures:
                # Confusion matrix, per-class ROC, alpha per class and per correct/wrong, the curriculum used.
                log_evaluation_figures(self.logger, preds.targets.numpy(), preds.probs.numpy(), self.classes,
                                       alpha=preds.alpha.numpy() if preds.alpha.numel() else None,
                                       prefix=split, curriculum=self._curriculum_used())
        state = full_fp32_state_dict(self.model)  # collective under ZeRO
        if env.is_main:
            export_dir = export_model(state, self.model, self.cfg.model, self.classes, self.run_dir / "export",
                                      extra={"image_size": self.cfg.data.loader.image_size,
                                             "best": best, "shards": str(self.cfg.data.shards)})
            (self.run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
            self.logger.log_artifact(export_dir / "model_config.json", "export")
            self.logger.log_artifact(self.run_dir / "metrics.json")
            if self.cfg.tracking.register_name:
                from ..registry import register_after_training

                registered = register_after_training(self.cfg, result, self.logger.run_id)
                if registered is not None:
                    result["registered"] = registered.as_dict()
        result["export_dir"] = str(self.run_dir / "export")
        barrier(env)
        return result

    def cleanup(self, status: str = "FINISHED") -> None:
        logger = getattr(self, "logger", None)
        if logger is not None:
            logger.close(status)


def run(cfg: Config, env: Optional[DistEnv] = None, report: Optional[Report] = None) -> Dict[str, Any]:
    """Train the fusion classifier; returns `run_dir`, `best_epoch`, `val/<metric>` (and `test/<metric>`)
    evaluated with the best checkpoint, and `export_dir`. `report(epoch, metrics)` is called on every rank
    after each evaluation. `env` defaults to the launcher's environment (a plain process is rank 0 of 1)."""
    recipe = FusionTrainingRecipe(cfg, env, report)
    status = "FAILED"
    try:
        recipe.setup()
        result = recipe.train()
        status = "FINISHED"
        return result
    finally:
        recipe.cleanup(status)
