"""A recipe written outside the package: a multi-label linear probe with BCE on a tiny multi-hot shard set.

The smallest recipe the core and data layers carry; tests use it to check the recipe contract, the run-folder
lock, resume rules and checkpoint safety without the cost of the fusion model."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mmlnb_dist.core.checkpoint import CheckpointManager, epoch_tag
from mmlnb_dist.core.config import save_config
from mmlnb_dist.core.distributed import gather_tensors, plan_batch
from mmlnb_dist.core.engine import OptimizerSpec, build_engine, seed_everything
from mmlnb_dist.core.tracking import build_logger
from mmlnb_dist.data.loader import build_loader
from mmlnb_dist.data.preprocess import ImageSamplePreprocess, MultiHotLabel
from mmlnb_dist.data.shardset import ShardSet

VOCAB = ["red", "green", "blue"]


class LinearProbe:
    """Multi-label linear probe on 8x8 thumbnails: the smallest recipe the core and data layers carry."""

    name = "probe"
    statuses: list = []

    def __init__(self, cfg, env, report=None):
        self.cfg, self.env, self.report = cfg, env, report
        self.run_dir = Path(cfg.run.dir)
        self.ckpt = CheckpointManager(self.run_dir / "checkpoints", env, cfg.train.keep_checkpoints)

    @classmethod
    def check(cls, cfg, env) -> None:
        CheckpointManager(Path(cfg.run.dir) / "checkpoints", env).check_fresh_start(cfg.run.resume, cfg.train.epochs)

    def setup(self) -> None:
        cfg, env = self.cfg, self.env
        self.shards = ShardSet.open(cfg.data.shards)
        for split in ("train", "val"):
            self.shards.require_split(split)
        prep = ImageSamplePreprocess(8, MultiHotLabel(self.shards.classes), augment=False, mean=(0.5,) * 3,
                                     std=(0.25,) * 3, text=False)
        self.plan = plan_batch(cfg.train.global_batch_size, env.world_size, None)
        self.loaders = {s: build_loader(self.shards, s, prep, cfg.data.loader, rank=env.rank, world_size=env.world_size,
                                        batch_size=self.plan.micro_batch, mode="train" if s == "train" else "eval",
                                        seed=cfg.run.seed) for s in ("train", "val")}
        seed_everything(cfg.run.seed)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, len(self.shards.classes)))
        steps = len(self.loaders["train"]) // self.plan.accumulation
        t = cfg.train
        self.built = build_engine(model, None, optimizer=OptimizerSpec(t.optimizer, t.lr), schedule=t.lr_schedule,
                                  total_steps=t.epochs * steps, plan=self.plan, dist=cfg.distributed, env=env)
        if env.is_main:  # as the package's recipes do: the resolved config beside the outputs
            save_config(cfg, self.run_dir / "config.yaml")
        self.logger = build_logger(cfg.tracking, cfg.run, env.rank, self.run_dir, "probe", config=cfg,
                                   datasets=self.shards.dataset_specs(), tags={"recipe": self.name})
        client = self.ckpt.resume(self.built.engine, cfg.run.resume)
        self.start_epoch, self.step = client.get("next_epoch", 0), client.get("step", 0)
        if cfg.run.resume:  # the steps logged after the checkpoint are logged again: one record per step
            self.logger.resumed_at(self.step if client else -1)

    def train(self) -> dict:
        engine, metrics = self.built.engine, {}
        for epoch in range(self.start_epoch, self.cfg.train.epochs):
            self.loaders["train"].set_epoch(epoch)
            for batch in self.loaders["train"]:
                loss = F.binary_cross_entropy_with_logits(engine(batch["image"]), batch["label"])
                engine.backward(loss)
                engine.step()
                self.step += 1
                self.logger.log_metrics({"train/loss": float(loss.detach()), "train/lr": self.built.lr()}, step=self.step)
            metrics = self.evaluate("val")
            self.logger.log_metrics(metrics, step=self.step)
            self.save_checkpoint(epoch)
            if self.report is not None:
                self.report(epoch, metrics)
        return {"run_dir": str(self.run_dir), **metrics}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict:
        from torchmetrics.functional.classification import multilabel_f1_score

        logits, labels = [], []
        for batch in self.loaders[split]:
            logits.append(self.built.engine(batch["image"]).float())
            labels.append(batch["label"])
        logits, labels = gather_tensors(self.env, (torch.cat(logits), torch.cat(labels)))
        return {f"{split}/loss": float(F.binary_cross_entropy_with_logits(logits, labels)),
                f"{split}/micro_f1": float(multilabel_f1_score(logits.sigmoid(), labels.long(), len(self.shards.classes),
                                                               average="micro"))}

    def save_checkpoint(self, epoch: int) -> str:
        return self.ckpt.save(self.built.engine, epoch_tag(epoch), {"next_epoch": epoch + 1, "step": self.step})

    def cleanup(self, status: str = "FINISHED") -> None:
        LinearProbe.statuses.append(status)
        if getattr(self, "logger", None) is not None:
            self.logger.close(status)


def multi_hot_shards(root: Path) -> Path:
    """48 tiny images whose labels are the colour channels switched on (1 to 3 of them)."""
    from mmlnb_dist.data.build import SampleSpec, build_shards
    from mmlnb_dist.data.config import BuildConfig

    rng = np.random.default_rng(0)
    specs = []
    for i in range(48):
        on = [c for c in range(3) if rng.random() < 0.5] or [int(rng.integers(3))]
        img = rng.integers(0, 60, (16, 16, 3)).astype(np.uint8)
        img[..., on] += 180
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        specs.append(SampleSpec(f"s{i:03d}", VOCAB[on[0]], buf.getvalue(), meta={"labels": [VOCAB[c] for c in on]}))
    build = BuildConfig(max_samples_per_shard=10, val_fraction=0.25, image_format="png", image_size=16)
    build_shards(specs, root / "shards", build, VOCAB, progress=False)
    return root / "shards"


def probe_config(shards: Path, out: Path, *extra: str):
    from mmlnb_dist.config import load_config

    return load_config(None, [f"data.shards={shards}", f"run.output_dir={out}", "run.name=probe",
                              "data.loader.num_workers=0", "train.epochs=3", "train.global_batch_size=8",
                              "train.lr=0.05", "train.lr_schedule.name=cosine", "train.lr_schedule.warmup_ratio=0.2",
                              "distributed.gradient_clipping=0", "tracking.backends=[stdout, mlflow]", *extra])
