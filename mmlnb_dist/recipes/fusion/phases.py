"""Staged freezing and frozen-feature caching: what changes when training enters a curriculum phase.

Entering a phase (once per phase) freezes or unfreezes the encoders, tells the learning-rate schedule which
parameter groups are frozen (it gives them a learning rate of exactly 0), and sets up a feature cache for each
frozen encoder whose input is not randomly augmented. When every encoder the model has is frozen and cached,
the heads train straight from a `FeatureTable` of the whole train split: no decoding, no encoder passes. Its
batches come from a train loader that reads only sample keys (`CachedKeys`) with the recipe's loader settings,
so they hold the same samples in the same order as the batches of a run without the cache.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

from ...core.distributed import DistEnv, plan_batch
from ...core.schedule import GroupSchedule, planned_group_lrs
from ...data.loader import build_loader
from ...models.encoders import module_fingerprint
from .config import CurriculumConfig, PhaseConfig
from .curriculum import phase_for_epoch, phase_index
from .features import CachedKeys, FeatureCache, FeatureTable
from .steps import fill_caches

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger(__name__)


def frozen_groups(model, phase: PhaseConfig) -> List[str]:
    """The parameter groups `phase` freezes: those of the model's encoders it does not train."""
    return [name for name, encoder, trains in (("image_encoder", model.image_encoder, phase.train_image_encoder),
                                               ("text_encoder", model.text_encoder, phase.train_text_encoder))
            if encoder is not None and not trains]


def planned_phase_lrs(schedule: GroupSchedule, curriculum: CurriculumConfig, model, steps_per_epoch: int,
                      total_steps: int) -> Dict[str, List[float]]:
    """Each group's planned learning rate at every optimizer step, 0 while a phase freezes it (the run's
    lr_schedule.png): the rates the schedule gives once `PhaseController.enter` has frozen each epoch's groups."""
    def frozen_at(step: int) -> List[str]:
        return frozen_groups(model, phase_for_epoch(curriculum, step // max(1, steps_per_epoch)))

    return planned_group_lrs(schedule, total_steps, frozen_at)


class PhaseController:
    """Applies the freezing phase of an epoch to the model, the schedule and the caches."""

    def __init__(self, cfg: "Config", model, schedule: GroupSchedule, train_eval_loader, env: DistEnv,
                 run_dir: Path):
        self.cfg, self.model, self.schedule = cfg, model, schedule
        self.loader, self.env, self.run_dir = train_eval_loader, env, run_dir
        self.entered: Optional[int] = None
        self.caches: Dict[str, Optional[FeatureCache]] = {"image": None, "text": None}
        self.table: Optional[FeatureTable] = None
        self.cache_loads = {"hits": 0, "misses": 0}
        """Feature caches found on disk (hits) or computed (misses) so far: a search reports them per trial."""

    def enter(self, epoch: int, force: bool = False, what: Optional[str] = None,
              evaluate_only: bool = False) -> int:
        """Apply the phase of `epoch` unless it is already applied; returns the phase index. `what` names the
        weights in the log line when they are not the epoch about to be trained (the reloaded best checkpoint).
        `evaluate_only` (the end of a run: only val/test are evaluated next): the frozen encoders get new, empty
        caches, filled by the evaluation passes themselves; the train split is neither read from disk nor
        encoded (a pass as long as an epoch of encoding) and no feature table is built."""
        cur = self.cfg.fusion.curriculum
        index = phase_index(cur, epoch)
        if index == self.entered and not force:
            return index
        self.entered = index
        phase = cur.phases[index]
        model = self.model
        model.set_trainable(phase.train_image_encoder, phase.train_text_encoder)
        self.schedule.set_frozen(frozen_groups(model, phase))
        log.info("%s: phase %d (image encoder %s, text encoder %s)", what or f"epoch {epoch}", index,
                 "trains" if model.image_trainable else "frozen", "trains" if model.text_trainable else "frozen")
        self._build_caches(fill_train=not evaluate_only)
        return index

    def cache_dir(self) -> Optional[Path]:
        """Where cached features persist: `run.cache_dir` (shared, e.g. by a search's trials), else the run
        folder with `fusion.feature_cache: disk`, else nowhere (memory only)."""
        if self.cfg.run.cache_dir is not None:
            return Path(self.cfg.run.cache_dir) / "features"
        return self.run_dir / "feature_cache" if self.cfg.fusion.feature_cache == "disk" else None

    def _key_loader(self, keys):
        """A train loader like the recipe's (same shards, settings, seed, rank and micro batch) that yields keys."""
        cfg, env = self.cfg, self.env
        plan = plan_batch(cfg.train.global_batch_size, env.world_size, cfg.distributed.micro_batch_per_gpu)
        return build_loader(self.loader.shard_set, "train", CachedKeys(keys), cfg.data.loader, rank=env.rank,
                            world_size=env.world_size, batch_size=plan.micro_batch, mode="train", seed=cfg.run.seed)

    def _build_caches(self, fill_train: bool = True) -> None:
        cfg, model = self.cfg, self.model
        self.caches = {"image": None, "text": None}
        self.table = None
        if not cfg.fusion.cache_frozen_features:
            return
        directory = self.cache_dir()
        lc = cfg.data.loader
        # What the cached features were computed from. The shard set's digest is part of the cache's name, so runs
        # on different shard sets sharing run.cache_dir (a search over VLM settings: same keys, other
        # descriptions) each get their own table instead of another set's features; the recorded provenance is
        # the backstop that refuses a table whose name matches but whose data does not.
        digest = self.loader.shard_set.digest
        # Text features do not depend on the image size: recording it would refuse a text table shared by runs at
        # two image sizes (a search over data.loader.image_size) although its features fit both.
        provenance = {"shards_manifest_sha256": digest}
        if model.image_encoder is not None and not model.image_trainable:
            if lc.augment:
                log.info("image encoder frozen but data.loader.augment=true: image features are NOT cached "
                         "(random augmentation changes every input)")
            else:
                ident = module_fingerprint(f"{model.image_encoder.name}@{lc.image_size}@{digest}", model.image_encoder)
                self.caches["image"] = FeatureCache("image", ident, directory,
                                                    provenance={**provenance, "image_size": lc.image_size})
        if model.text_encoder is not None and not model.text_trainable:
            te = model.text_encoder
            ident = module_fingerprint(f"{te.name}@{te.pooling}@{te.max_length}@{digest}", te)
            self.caches["text"] = FeatureCache("text", ident, directory, provenance=provenance)
        active = {k: c for k, c in self.caches.items() if c is not None}
        if not active or not fill_train:
            return
        loaded = {k: c.load() for k, c in active.items()}
        for found in loaded.values():
            self.cache_loads["hits" if found else "misses"] += 1
        t0 = time.perf_counter()
        keys, labels = fill_caches(model, self.loader, active, self.env)
        if self.env.is_main:
            for kind, c in active.items():
                if not loaded[kind]:
                    c.save()
        where = f"disk ({directory})" if directory else "memory"
        log.info("feature caching ON for %s in %s: %d train samples in %.1fs",
                 ", ".join(f"{k} [{c.identity}]" for k, c in active.items()), where, len(keys),
                 time.perf_counter() - t0)
        needs_image = model.image_encoder is not None
        needs_text = model.text_encoder is not None
        if (not needs_image or active.get("image")) and (not needs_text or active.get("text")):
            # Every input of the model is cached: train the heads straight from the features.
            self.table = FeatureTable(
                keys, labels, active["image"].stacked(keys) if needs_image else None,
                active["text"].stacked(keys) if needs_text else None, order=self._key_loader(keys),
            )
            log.info("all encoders frozen and cached: training the heads from features (no decoding, no encoders)")
