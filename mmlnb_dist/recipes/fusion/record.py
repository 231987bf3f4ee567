"""What a fusion run really trained, recorded in its result (`metrics.json["trained"]`): the model parts whose
parameters the optimizer holds, the curriculum lambda and mean PRMF alpha of every evaluated epoch, and the
descriptions it read (shard set, digest, and the VLM and adapter that wrote them).

An ablation table is only as good as its rows: a "no text branch" row whose optimizer still held the text
encoder, or a "fixed alpha" row whose alpha moved, would compare something else. The record is taken from the
engine's optimizer and the run's own history, not from the config that asked for it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

if TYPE_CHECKING:
    from .recipe import FusionRecipe

PARTITIONED = "partitioned"
"""The part name of optimizer parameters that are no module parameter: ZeRO-1/2 replace the groups' parameters
by flat partitions of them (the group names still say which parts they hold)."""


def optimizer_parts(recipe: "FusionRecipe") -> Dict[str, Any]:
    """Elements per model part (first component of the parameter name: image_encoder, text_encoder, fusion, head,
    image_head) over the parameters of the engine's optimizer, and the elements per named parameter group."""
    part_of = {id(p): name.split(".", 1)[0] for name, p in recipe.model.named_parameters()}
    parts: Dict[str, int] = {}
    groups: Dict[str, int] = {}
    for i, group in enumerate(recipe.engine.optimizer.param_groups):
        name = str(group.get("name", f"group{i}"))
        for p in group["params"]:
            part = part_of.get(id(p), PARTITIONED)
            parts[part] = parts.get(part, 0) + p.numel()
            groups[name] = groups.get(name, 0) + p.numel()
    return {"parts": parts, "groups": groups}


def descriptions_used(recipe: "FusionRecipe") -> Dict[str, Any]:
    """The shard set the text branch read and who wrote its `txt` (None under `describe`: reference text)."""
    shards = recipe.shards
    describe: Optional[Dict[str, Any]] = (shards.manifest.get("provenance") or {}).get("describe")
    made_by = None
    if describe:
        made_by = {k: describe.get(k)
                   for k in ("model", "tiny_seed", "tiny_vision", "adapter", "adapter_sha256", "prompt")}
    return {"shards": str(shards.root), "manifest_sha256": shards.digest, "describe": made_by}


def what_trained(recipe: "FusionRecipe") -> Dict[str, Any]:
    history = recipe.history
    return {
        "mode": recipe.cfg.fusion.model.mode,
        "optimizer": optimizer_parts(recipe),
        "epochs": [int(h["epoch"]) for h in history],
        "lambdas": [float(h["train/lambda"]) for h in history],
        "alpha_means": [h.get("train/alpha_mean") for h in history],
        "val_alpha_means": [h.get("val/alpha_mean") for h in history],
        "descriptions": descriptions_used(recipe),
    }
