"""The end of a CLIP run and its inference export: consolidated fp32 safetensors and JSON, no pickles.

    runs/<name>/export/model.safetensors   fp32 weights of the best checkpoint (towers + head)
    runs/<name>/export/model_config.json   format, labels, the `clip.model` section, top_k, preprocessing
    runs/<name>/export/clip/               the transformers CLIPConfig and the tokenizer files

`load_exported_model` rebuilds the classifier from these files alone, offline (no pretrained downloads).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Tuple, Union

import torch

from ...core.checkpoint import full_fp32_state_dict
from ...core.distributed import barrier
from ...core.errors import UserError
from .config import ClipModelConfig
from .metrics import scalar_metrics
from .towers import CLIP_MEAN, CLIP_STD

if TYPE_CHECKING:
    from .recipe import ClipRecipe

log = logging.getLogger(__name__)

EXPORT_FORMAT = "mmlnb-clip-export/1"


def export_model(state: Dict[str, torch.Tensor], model, model_cfg: ClipModelConfig, classes: List[str],
                 export_dir: Path, image_size: int, top_k: int, extra: Dict[str, Any]) -> Path:
    """Write model.safetensors, model_config.json and clip/ (rank 0 only)."""
    from safetensors.torch import save_file

    export_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(export_dir / "model.safetensors"))
    model.towers.clip.config.save_pretrained(str(export_dir / "clip"))
    model.towers.tokenizer.save_pretrained(str(export_dir / "clip"))
    meta = {"format": EXPORT_FORMAT, "classes": list(classes), "model": model_cfg.model_dump(mode="json"),
            "image_size": image_size, "top_k": top_k,
            "preprocessing": {"image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD),
                              "max_length": model.towers.max_length}, **extra}
    (export_dir / "model_config.json").write_text(json.dumps(meta, indent=2))
    return export_dir


def load_exported_model(export_dir: Union[str, Path]) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """(ClipMultiLabel in eval mode with the exported weights, its description). Call
    `model(pixel_values=x, **model.towers.tokenize(texts))` -> logits [B, labels]; sigmoid gives probabilities
    in `meta["classes"]` order; x normalised with `meta["preprocessing"]` at `meta["image_size"]`."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    from .model import ClipMultiLabel
    from .towers import ClipTowers

    export_dir = Path(export_dir)
    meta_path = export_dir / "model_config.json"
    if not meta_path.is_file():
        raise UserError(f"{meta_path} not found: not a CLIP export folder")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != EXPORT_FORMAT:
        raise UserError(f"{meta_path}: unknown export format {meta.get('format')!r} (expected {EXPORT_FORMAT})")
    cfg = ClipModelConfig.model_validate(meta["model"])
    clip = CLIPModel(CLIPConfig.from_pretrained(str(export_dir / "clip")))  # architecture; weights below
    tokenizer = AutoTokenizer.from_pretrained(str(export_dir / "clip"))
    towers = ClipTowers(cfg.towers.name, clip, tokenizer, meta["preprocessing"]["max_length"])
    model = ClipMultiLabel(towers, cfg, len(meta["classes"]))
    model.load_state_dict(load_file(str(export_dir / "model.safetensors")), strict=True)
    return model.eval(), meta


def finish(recipe: "ClipRecipe") -> Dict[str, Any]:
    """Reload the best checkpoint, evaluate val (and test) with it, export, write metrics.json. Returns
    `run_dir`, `best_*`, `val/<metric>` (and `test/<metric>`), `val/labels_without_positives`, `export_dir`."""
    cfg, env = recipe.cfg, recipe.env
    result: Dict[str, Any] = {"run_dir": str(recipe.run_dir), "world_size": env.world_size}
    best = recipe.best or recipe.checkpoints.best
    if best is not None:
        recipe.checkpoints.load(recipe.engine.engine, tag=best["tag"], module_only=True)
        result.update({"best_epoch": best["epoch"], "best_metric": best["metric"], "best_value": best["value"]})
    for split in ["val"] + (["test"] if recipe.has_test else []):
        metrics = recipe.evaluate(split)
        result.update(scalar_metrics(metrics, f"{split}/"))
        for key in ("labels_without_positives", "labels_without_negatives", "per_label_f1"):
            result[f"{split}/{key}"] = metrics[key]
        recipe.logger.log_metrics(scalar_metrics(metrics, f"best/{split}/"), step=recipe.global_step)
        if metrics["labels_without_positives"]:
            log.info("%s: macro AUROC leaves out labels without positives: %s", split,
                     ", ".join(metrics["labels_without_positives"]))
    state = full_fp32_state_dict(recipe.model)  # collective under ZeRO
    export_dir = recipe.run_dir / "export"
    if env.is_main:
        export_model(state, recipe.model, cfg.clip.model, recipe.classes, export_dir,
                     image_size=cfg.data.loader.image_size, top_k=cfg.clip.top_k,
                     extra={"best": best, "shards": str(cfg.data.shards)})
        (recipe.run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
        recipe.logger.log_artifact(export_dir / "model_config.json", "export")
        recipe.logger.log_artifact(recipe.run_dir / "metrics.json")
    result["export_dir"] = str(export_dir)
    barrier(env)
    return result
