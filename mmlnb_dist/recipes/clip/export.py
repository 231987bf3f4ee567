"""The end of a CLIP run and its inference export: consolidated fp32 safetensors and JSON, no pickles.

    runs/<name>/export/model.safetensors   fp32 weights of the best checkpoint (towers + head)
    runs/<name>/export/model_config.json   format, labels, the `clip.model` section, top_k, preprocessing
    runs/<name>/export/clip/               the towers' architecture: a transformers CLIPConfig + tokenizer files,
                                           or open_clip's open_clip_config.json (model_cfg + preprocess_cfg)
    runs/<name>/export/text_encoder/       a BERT text branch's config and tokenizer (clip.model.text_encoder)

`load_exported_model` rebuilds the classifier from these files alone, offline (no pretrained downloads).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Tuple, Union

import torch

from ...core.distributed import rank0_alone
from ...core.divergence import EXPORT_REMEDY, load_finite
from ...core.errors import UserError
from ...core.files import EXPORT_DESCRIPTION, read_export_description, replace_text, start_export
from ...core.fp32_weights import full_fp32_state_dict
from ...core.recipe import write_result
from ...core.tracking.registry import EXPORT_FOLDER
from ...core.tracking.versions import record_export
from .config import ClipModelConfig
from .metrics import scalar_metrics
from .plots import publish_run

if TYPE_CHECKING:
    from .recipe import ClipRecipe

log = logging.getLogger(__name__)

EXPORT_FORMAT = "mmlnb-clip-export/2"
READABLE_FORMATS = ("mmlnb-clip-export/1", EXPORT_FORMAT)
"""/2 adds `towers` (kind, tokenizer; null when no CLIP tower is used) and `text_encoder/` for the BERT branch;
a /1 export holds transformers towers."""
TEXT_ENCODER_DIR = "text_encoder"


def towers_meta(towers) -> Dict[str, Any]:
    """What rebuilds the towers' tokenizer: the tower kind, the tokenizer and its token limit."""
    simple = towers.kind == "open_clip" and not hasattr(towers.tokenizer, "tokenizer")
    tokenizer = ("open_clip SimpleTokenizer" if simple
                 else type(getattr(towers.tokenizer, "tokenizer", towers.tokenizer)).__name__)
    return {"kind": towers.kind, "tokenizer": tokenizer, "context_length": towers.max_length}


def export_model(state: Dict[str, torch.Tensor], model, model_cfg: ClipModelConfig, classes: List[str],
                 export_dir: Path, image_size: int, top_k: int, extra: Dict[str, Any]) -> Path:
    """Write model.safetensors, model_config.json and clip/ (rank 0 only)."""
    from safetensors.torch import save_file

    start_export(export_dir)  # model_config.json comes last: a folder without it is an unfinished export
    save_file({k: v.contiguous() for k, v in state.items()}, str(export_dir / "model.safetensors"))
    if model.towers is not None:
        model.towers.save(export_dir / "clip")
    if model.text_branch is not None:
        model.text_branch.save(export_dir / TEXT_ENCODER_DIR)
    max_length = next((m.max_length for m in (model.towers, model.text_branch) if m is not None), None)
    meta = {"format": EXPORT_FORMAT, "classes": list(classes), "model": model_cfg.model_dump(mode="json"),
            "image_size": image_size, "top_k": top_k,
            "towers": towers_meta(model.towers) if model.towers is not None else None,
            "preprocessing": {"image_mean": list(model.image_mean), "image_std": list(model.image_std),
                              "max_length": max_length}, **extra}
    replace_text(export_dir / EXPORT_DESCRIPTION, json.dumps(meta, indent=2))
    return export_dir


def load_exported_model(export_dir: Union[str, Path]) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """(ClipMultiLabel in eval mode with the exported weights, its description). Call
    `model(pixel_values=x, **model.towers.tokenize(texts))` -> logits [B, labels]; sigmoid gives probabilities
    in `meta["classes"]` order; x normalised with `meta["preprocessing"]` at `meta["image_size"]`."""
    from .branches import build_image_branch, load_text_branch
    from .model import ClipMultiLabel, branch_plan, freeze_unused_tower, tower_sides
    from .towers import load_towers

    export_dir = Path(export_dir)
    meta_path = export_dir / EXPORT_DESCRIPTION
    meta = read_export_description(export_dir, "CLIP")
    if meta.get("format") not in READABLE_FORMATS:
        raise UserError(f"{meta_path}: unknown export format {meta.get('format')!r} (expected {EXPORT_FORMAT})")
    cfg = ClipModelConfig.model_validate(meta["model"])
    towers_info = meta.get("towers", {"kind": "transformers"})  # a /1 export always has transformers towers
    plan = branch_plan(cfg)
    towers = None
    if towers_info is not None:
        towers = load_towers(towers_info["kind"], cfg.towers.name, export_dir / "clip",
                             meta["preprocessing"]["max_length"])
        towers.set_unfrozen_blocks(cfg.towers.unfreeze_blocks if cfg.fusion != "zero_shot" else 0,
                                   sides=tower_sides(plan))  # as build_model: the towers the model runs
        freeze_unused_tower(towers, plan)
    image_branch = build_image_branch(cfg, pretrained=False) if plan["encoder_image"] else None  # weights below
    text_branch = load_text_branch(cfg, export_dir / TEXT_ENCODER_DIR) if plan["encoder_text"] else None
    model = ClipMultiLabel(towers, cfg, len(meta["classes"]), meta["classes"], image_branch, text_branch)
    model.load_state_dict(load_finite(export_dir / "model.safetensors", EXPORT_REMEDY), strict=True)
    return model.eval(), meta


def finish(recipe: "ClipRecipe") -> Dict[str, Any]:
    """Reload the best checkpoint, evaluate val (and test) with it, export, write metrics.json. Returns
    `run_dir`, `classes`, `best_*`, `val/<metric>` (and `test/<metric>`), `val/labels_without_positives`,
    `export_dir`."""
    cfg, env = recipe.cfg, recipe.env
    result: Dict[str, Any] = {"run_dir": str(recipe.run_dir), "world_size": env.world_size,
                              "epochs_trained": cfg.train.epochs if recipe.engine is not None else 0,
                              # the labels of every `<split>/per_label_f1` entry, in order (a bare list otherwise)
                              "classes": list(recipe.classes)}
    best = recipe.best or recipe.checkpoints.best
    if best is not None:
        recipe.checkpoints.load(recipe.engine.engine, tag=best["tag"], module_only=True)
        result.update({"best_epoch": best["epoch"], "best_metric": best["metric"], "best_value": best["value"]})
    for split in ["val"] + (["test"] if recipe.has_test else []):
        # log_data=False: a trained run evaluated val at this step (its last epoch, or the killed process before
        # this resume), so `data/bad_samples/val` is logged there once (the same samples; only the weights differ)
        metrics = recipe.evaluate(split, log_data=split != "val" or recipe.engine is None)
        result.update(scalar_metrics(metrics, f"{split}/"))
        for key in ("labels_without_positives", "labels_without_negatives", "per_label_f1"):
            result[f"{split}/{key}"] = metrics[key]
        recipe.logger.log_metrics(scalar_metrics(metrics, f"best/{split}/"), step=recipe.global_step)
        if metrics["labels_without_positives"]:
            log.info("%s: macro AUROC leaves out labels without positives: %s", split,
                     ", ".join(metrics["labels_without_positives"]))
    # collective under ZeRO; the engine's optimizer holds the fp32 masters at ZeRO-0 bf16 (none when zero-shot)
    state = full_fp32_state_dict(recipe.model, recipe.engine.engine.optimizer if recipe.engine is not None else None)
    export_dir = recipe.run_dir / EXPORT_FOLDER
    # rank 0 exports and may register (an upload to the tracking server, unbounded): the others wait for it
    with rank0_alone(env, cfg.distributed.rank0_wait_s):
        if env.is_main:
            export_model(state, recipe.model, cfg.clip.model, recipe.classes, export_dir,
                         image_size=cfg.data.loader.image_size, top_k=cfg.clip.top_k,
                         # the loss's weights: `evaluate` with another config still gives the run's own loss
                         extra={"best": best, "shards": str(cfg.data.shards), "pos_weight": cfg.clip.pos_weight})
            # what `register` checks the export against: a changed or replaced export is refused
            record_export(recipe.logger, recipe.run_dir, export_dir)
            # atomic: `tracking import` reads this file as "the run finished"; a kill leaves none, never half
            write_result(recipe.run_dir, result)
            recipe.logger.log_artifact(export_dir / "model_config.json", "export")
            recipe.logger.log_artifact(recipe.run_dir / "metrics.json")
            result.update(publish_run(recipe, result, export_dir))  # figures; the registry when asked (pyfunc_model)
    result["export_dir"] = str(export_dir)
    return result
