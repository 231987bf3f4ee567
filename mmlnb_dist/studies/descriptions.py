"""The descriptions a study's rows read, computed once per study and shared by every row and seed that reads them.

    sets = prepare_descriptions(cfg, {"fine_tuned_vlm", "base_vlm"}, study_dir)
    sets.paths["fine_tuned_vlm"]     # <study>/cache/described/<fingerprint>: the shard set with generated `txt`

Sources (a recipe's variants module maps rows to them in `DESCRIPTIONS`; unlisted rows read `fine_tuned_vlm`):
- `fine_tuned_vlm`: the VLM fine-tuned with LoRA on the train split's pairs (`pipeline.stage_finetune_vlm`), then
  `describe` with its adapter, as `pipeline` does;
- `base_vlm`: `describe` with the base VLM and no adapter (the paper's "no VLM fine-tuning" row);
- `shards`: the text already in `data.shards` (reference descriptions, or an earlier describe's), no VLM stage.

Both VLM sources are pipeline stages with fingerprints in `<study>/cache`: a rerun, a new seed or a new row finds
them done and skips them. The study's own seed (`run.seed`, not the rows' seeds) fine-tunes the VLM, so every
seed of a row compares classifiers on the same descriptions.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from ..config import Config
from ..core.distributed import DistEnv
from ..core.errors import ConfigError, UserError
from ..pipeline import base_vlm_stage, existing_shards, stage_describe, stage_finetune_vlm
from ..recipes import RECIPES

log = logging.getLogger(__name__)

FINE_TUNED, BASE, SHARDS = "fine_tuned_vlm", "base_vlm", "shards"
DESCRIPTION_SOURCES = (FINE_TUNED, BASE, SHARDS)


def require_shards(path) -> None:
    """Refuse a `data.shards` (the study's, or a description set made from it) that is no shard set."""
    try:
        existing_shards(path)
    except UserError as err:
        raise UserError(f"data.shards: {err}") from None


def check_source(cfg: Config, descriptions: Optional[str]) -> None:
    """`--descriptions` for `cfg`'s recipe: vlm or shards; `vlm` is refused for a recipe that reads no VLM
    descriptions (CLIP trains on the text already in data.shards): no VLM stage would run, and the table would
    read as if one had written its text."""
    if descriptions not in (None, "vlm", SHARDS):
        raise ConfigError(f"--descriptions: '{descriptions}' is not one of vlm, shards")
    spec = RECIPES[cfg.train.recipe]
    if descriptions == "vlm" and not spec.needs_descriptions:
        raise ConfigError(f"--descriptions vlm: the {spec.name} recipe trains on the text already in data.shards "
                          f"(its captions); no VLM describes the shards for it. Leave --descriptions out (or give "
                          f"--descriptions shards, which is what it reads)")


@dataclass
class DescriptionSets:
    paths: Dict[str, Path] = field(default_factory=dict)
    """source -> the shard set whose `txt` the rows of that source read."""
    fingerprints: Dict[str, str] = field(default_factory=dict)
    computed: List[str] = field(default_factory=list)
    """Sources whose descriptions this call generated (the rest were up to date in the cache)."""
    vlm_finetuned: Optional[bool] = None
    """Whether this call fine-tuned the VLM (None: no row needed it)."""

    def summary(self) -> Dict[str, Dict[str, object]]:
        return {s: {"shards": str(p), "fingerprint": self.fingerprints[s], "computed_now": s in self.computed}
                for s, p in self.paths.items()}


def _stage_config(cfg: Config, study_dir: Path, source: str, parent_run_id: Optional[str],
                  tracking_uri: Optional[str]) -> Config:
    """The study's config for a description stage: its tracking (the describe run) goes under the study."""
    stage_cfg = cfg.model_copy(deep=True)
    stage_cfg.run.output_dir, stage_cfg.run.name = study_dir / "cache" / "runs", source
    stage_cfg.run.resume = False
    if parent_run_id is not None:
        stage_cfg.tracking.parent_run_id, stage_cfg.tracking.uri = parent_run_id, tracking_uri
    return stage_cfg


def prepare_descriptions(cfg: Config, sources: Iterable[str], study_dir: Path, parent_run_id: Optional[str] = None,
                         tracking_uri: Optional[str] = None) -> DescriptionSets:
    """Generate (or find up to date) the descriptions of each source in `sources` for the shards of `data.shards`."""
    sets = DescriptionSets()
    wanted = [s for s in DESCRIPTION_SOURCES if s in set(sources)]
    if SHARDS in wanted:
        sets.paths[SHARDS] = Path(cfg.data.shards)
        sets.fingerprints[SHARDS] = existing_shards(cfg.data.shards).fingerprint
    vlm_sources = [s for s in wanted if s != SHARDS]
    if not vlm_sources:
        return sets
    env = DistEnv.from_environment()
    cache = study_dir / "cache"
    shards = existing_shards(cfg.data.shards)
    for source in vlm_sources:
        stage_cfg = _stage_config(cfg, study_dir, source, parent_run_id, tracking_uri)
        if source == FINE_TUNED:
            vlm = stage_finetune_vlm(stage_cfg, shards, env, cache_root=cache)
            sets.vlm_finetuned = not vlm.skipped
        else:
            vlm = base_vlm_stage(stage_cfg)
        described = stage_describe(stage_cfg, vlm, shards, env, cache_root=cache)
        sets.paths[source], sets.fingerprints[source] = described.output, described.fingerprint
        if not described.skipped:
            sets.computed.append(source)
        log.info("descriptions (%s): %s %s", source, described.output,
                 "generated now" if not described.skipped else "up to date in the study cache")
    return sets
