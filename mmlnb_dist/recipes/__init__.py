"""The recipe table: every recipe the CLI, the pipeline and Tune can run, and the config section it owns.

A new recipe is a package beside `fusion/` and `vlm/` (config section, model, loss, metrics, recipe class; see
docs/adding-a-recipe.md) plus one row here. The root config (`mmlnb_dist.config.Config`) takes its sections
from this table, and `train.best_metric` is checked against the chosen recipe's metric names.

Only light modules are imported here (the config sections); a recipe's class is imported when it runs.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Sequence, Tuple, Type

from ..core.config import Section
from ..core.errors import ConfigError
from .clip.config import LOWER_IS_BETTER as CLIP_LOWER_IS_BETTER
from .clip.config import METRIC_NAMES as CLIP_METRICS
from .clip.config import ClipConfig
from .fusion.config import LOWER_IS_BETTER as FUSION_LOWER_IS_BETTER
from .fusion.config import METRIC_NAMES as FUSION_METRICS
from .fusion.config import FusionConfig
from .vlm.config import VLMConfig


@dataclass(frozen=True)
class RecipeSpec:
    """One row of the table."""

    name: str
    """What `train.recipe` / `tune.recipe` say to run it."""
    section: str
    """Its config section's key in the root config."""
    config: Type[Section]
    """Its config section's class."""
    target: str
    """`module:Class` of the recipe class (imported only when it runs)."""
    description: str
    """One line for `config explain` and `--help`."""
    metrics: Tuple[str, ...] = ()
    """Validation metric names that `train.best_metric` may pick."""
    lower_is_better: FrozenSet[str] = field(default_factory=frozenset)
    """Metrics where lower is better (everything else: higher)."""
    register: str = ""
    """`module:function(run_id, name, *, alias, tracking_uri, metric, mode, model_dir=None) -> RegisterResult`
    that registers a finished run's model in the MLflow registry ("" when the recipe has nothing to register)."""
    evaluate: str = ""
    """`module:function(cfg, *, export, checkpoint, tag, split, as_json) -> str` behind `mmlnb-dist evaluate`
    (returns what it prints); "" for the fusion recipe's own path in commands/train.py or no evaluation."""
    needs_descriptions: bool = False
    """It trains on VLM descriptions: the pipeline fine-tunes the VLM and describes the patches before it."""
    tune_space: str = ""
    """The shipped search space (`tune/spaces/<name>.yaml`) that `tune` searches for it without `--space` ("": none,
    `--space` is required)."""
    variants: str = ""
    """Module of the recipe's ablation / baseline rows (`rows(cfg)` and `METRICS`) that `mmlnb-dist ablate` trains
    and tabulates (mmlnb_dist/studies.py); "" when it has none."""
    reports: str = ""
    """`module:function(cfg) -> Optional[int]`: how many reports a run of `cfg` makes to a Tune trial, when that is
    not one per `train.epochs` epoch (ASHA's max_t); None when its inputs cannot be read. "": one per epoch."""
    report_count_keys: Tuple[str, ...] = ()
    """Config keys that change that count: a search space varying one needs `tune.max_t`."""
    shard_task: str = "single"
    """The shard sets it trains on: "single" (one label per patch, what `slides tile` and `shards build` make) or
    "multilabel" (label sets: `shards build --task multilabel`, `data.synth.task=multilabel`)."""


RECIPES: Dict[str, RecipeSpec] = {spec.name: spec for spec in (
    RecipeSpec("fusion", "fusion", FusionConfig, "mmlnb_dist.recipes.fusion.recipe:FusionRecipe",
               "Stage 2 of MMLNB: the dual-branch PRMF classifier (image + description) with the curriculum",
               metrics=(*FUSION_METRICS, "loss"), lower_is_better=FUSION_LOWER_IS_BETTER,
               register="mmlnb_dist.recipes.fusion.pyfunc_model:register_run", needs_descriptions=True,
               variants="mmlnb_dist.recipes.fusion.variants", tune_space="curriculum"),
    RecipeSpec("vlm", "vlm", VLMConfig, "mmlnb_dist.recipes.vlm.finetune:FinetuneVLMRecipe",
               "Stage 1 of MMLNB: the description VLM (Qwen2.5-VL + LoRA): fine-tuning and describe",
               metrics=("loss",), lower_is_better=frozenset({"loss"}), tune_space="lora",
               reports="mmlnb_dist.recipes.vlm.batches:report_count",
               report_count_keys=("vlm.epochs", "vlm.max_steps", "vlm.eval_every", "vlm.global_batch_size",
                                  "vlm.pairs")),
    RecipeSpec("clip", "clip", ClipConfig, "mmlnb_dist.recipes.clip.recipe:ClipRecipe",
               "Fine-tuned CLIP towers + MLP head for multi-label classification of image-caption pairs (seed 002)",
               metrics=(*CLIP_METRICS, "loss"), lower_is_better=CLIP_LOWER_IS_BETTER,
               register="mmlnb_dist.recipes.clip.pyfunc_model:register_run",
               evaluate="mmlnb_dist.recipes.clip.evaluate:evaluate_command",
               variants="mmlnb_dist.recipes.clip.variants", tune_space="clip", shard_task="multilabel"),
)}


def spec_for(name: str, key: str = "train.recipe") -> RecipeSpec:
    if name not in RECIPES:
        raise ConfigError(f"{key}: unknown recipe '{name}'; the recipe table has {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def load_class(target: str, key: str = "tune.recipe") -> type:
    """Import `package.module:Name`."""
    module, _, name = target.partition(":")
    if not name:
        raise ConfigError(f"{key}: '{target}' is neither a recipe of the table ({', '.join(sorted(RECIPES))}) "
                          f"nor 'package.module:Name'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{key}: cannot import '{target}' ({err})") from None


def recipe_class(name: str, key: str = "train.recipe") -> type:
    """The recipe class of a table name, or of a `module:Class` target."""
    return load_class(RECIPES[name].target if name in RECIPES else name, key)


def unread_keys(keys: Sequence[str], *recipes: str) -> List[str]:
    """The dotted `keys` in a recipe section that none of `recipes` (table names) owns: settings a run of them never
    reads (`fusion.*` for a CLIP run). None for a recipe outside the table (a `module:Class` target may read any)."""
    if not recipes or any(r not in RECIPES for r in recipes):
        return []
    others = {spec.section for spec in RECIPES.values()} - {RECIPES[r].section for r in recipes}
    return [key for key in keys if key.split(".", 1)[0] in others]


def refuse_unread_overrides(overrides: Sequence[str], recipe: str) -> None:
    """A command-line override of a recipe section the run never reads (`fusion.*` for train.recipe=clip) would
    change nothing: a `ConfigError` before any work, naming the keys and what the recipe reads."""
    unread = unread_keys([o.split("=", 1)[0].strip() for o in overrides], recipe)
    if unread:
        raise ConfigError(f"train.recipe={recipe} never reads {', '.join(unread)}: these overrides would change "
                          f"nothing. Its settings are train.*, data.*, {RECIPES[recipe].section}.* (or set "
                          f"train.recipe to the recipe they belong to)")


def check_configs(cfg: Any, world_size: int, recipes: Sequence[str]) -> None:
    """Each named recipe's `check_config` (the config alone: no data read, nothing on disk): what its run would
    refuse at start, said by `config validate` and before a pipeline's first stage instead."""
    for name in recipes:
        check = getattr(recipe_class(name), "check_config", None)
        if check is not None:
            check(cfg, world_size)


def recipes_of(cfg: Any) -> List[str]:
    """The recipes a config's pipeline runs: the training recipe, and the VLM fine-tuning before one that reads
    descriptions (when `vlm.finetune` is on)."""
    spec = RECIPES.get(cfg.train.recipe)
    return [cfg.train.recipe] + (["vlm"] if spec is not None and spec.needs_descriptions and cfg.vlm.finetune else [])
