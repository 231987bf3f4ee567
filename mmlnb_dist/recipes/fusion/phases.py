"""Staged freezing and frozen-feature caching: what changes when training enters a curriculum phase.

Entering a phase (once per phase) freezes or unfreezes the encoders, tells the learning-rate schedule which
parameter groups are frozen (it gives them a learning rate of exactly 0), and sets up a feature cache for each
frozen encoder whose input is not randomly augmented. When every encoder the model has is frozen and cached,
the heads train straight from a `FeatureTable` of the whole train split: no decoding, no encoder passes.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional

from ...core.distributed import DistEnv
from ...core.schedule import GroupSchedule
from ...models.encoders import module_fingerprint
from .curriculum import phase_index
from .features import FeatureCache, FeatureTable
from .steps import fill_caches

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger(__name__)


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

    def enter(self, epoch: int, force: bool = False) -> int:
        """Apply the phase of `epoch` unless it is already applied; returns the phase index."""
        cur = self.cfg.fusion.curriculum
        index = phase_index(cur, epoch)
        if index == self.entered and not force:
            return index
        self.entered = index
        phase = cur.phases[index]
        model = self.model
        model.set_trainable(phase.train_image_encoder, phase.train_text_encoder)
        frozen = [name for name, trains in (("image_encoder", model.image_trainable),
                                            ("text_encoder", model.text_trainable)) if not trains]
        self.schedule.set_frozen(frozen)
        log.info("epoch %d: phase %d (image encoder %s, text encoder %s)", epoch, index,
                 "trains" if model.image_trainable else "frozen", "trains" if model.text_trainable else "frozen")
        self._build_caches()
        return index

    def cache_dir(self) -> Optional[Path]:
        """Where cached features persist: `run.cache_dir` (shared, e.g. by a search's trials), else the run
        folder with `fusion.feature_cache: disk`, else nowhere (memory only)."""
        if self.cfg.run.cache_dir is not None:
            return Path(self.cfg.run.cache_dir) / "features"
        return self.run_dir / "feature_cache" if self.cfg.fusion.feature_cache == "disk" else None

    def _build_caches(self) -> None:
        cfg, model = self.cfg, self.model
        self.caches = {"image": None, "text": None}
        self.table = None
        if not cfg.fusion.cache_frozen_features:
            return
        directory = self.cache_dir()
        lc = cfg.data.loader
        if model.image_encoder is not None and not model.image_trainable:
            if lc.augment:
                log.info("image encoder frozen but data.loader.augment=true: image features are NOT cached "
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
                active["text"].stacked(keys) if needs_text else None,
            )
            log.info("all encoders frozen and cached: training the heads from features (no decoding, no encoders)")
