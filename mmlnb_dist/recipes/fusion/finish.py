"""The end of a fusion run: reload the best checkpoint, evaluate val and test with it, draw the figures,
export the weights for inference, write `metrics.json`, and register the model when asked."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict

from ...core.fp32_weights import full_fp32_state_dict
from ...core.distributed import rank0_alone
from ...core.recipe import write_result
from ...core.logging import DETAIL
from ...core.tracking.registry import EXPORT_FOLDER, register_or_explain
from ...core.tracking.versions import record_export
from ...models.encoders import encoder_provenance
from .curriculum import trained_lambda
from .export import export_model
from .metrics import format_metrics_table, scalar_metrics
from .model import TWO_BRANCH_MODES
from .plots import log_evaluation_figures
from .record import what_trained

if TYPE_CHECKING:
    from .recipe import FusionRecipe

log = logging.getLogger(__name__)


def curriculum_used(recipe: "FusionRecipe") -> Dict[str, Any]:
    """The lambda of every epoch the run trained: its history's (so a resumed run shows all of them), and for an
    epoch it did not evaluate (`train.eval_every` > 1: no history entry) the curriculum's lambda of that epoch,
    the one the loop trained it with. The phases name only the encoders the model has (a text-only model's phase
    that "trains the image encoder" trains none)."""
    cur = recipe.cfg.fusion.curriculum
    logged = {int(h["epoch"]): h["train/lambda"] for h in recipe.history}
    epochs = list(range(max(logged) + 1)) if logged else []
    mode = recipe.cfg.fusion.model.mode
    has = {"train_image_encoder": mode != "text_only", "train_text_encoder": mode != "image_only"}
    phases = [{**p.model_dump(), **{k: bool(getattr(p, k)) and there for k, there in has.items()}} for p in cur.phases]
    lambdas = [logged[e] if e in logged else trained_lambda(cur, e, mode in TWO_BRANCH_MODES) for e in epochs]
    return {"epochs": epochs, "lambdas": lambdas, "phases": phases}


def finish(recipe: "FusionRecipe") -> Dict[str, Any]:
    """Returns `run_dir`, `best_epoch`, `val/<metric>` (and `test/<metric>`) evaluated with the best
    checkpoint, `export_dir`, and the feature-cache counts (`cache/hits`, `cache/misses`)."""
    cfg, env = recipe.cfg, recipe.env
    result: Dict[str, Any] = {"run_dir": str(recipe.run_dir), "world_size": env.world_size}
    best = recipe.best or recipe.checkpoints.best
    if best is not None:
        recipe.checkpoints.load(recipe.engine.engine, tag=best["tag"], module_only=True)
        # caches were built for the last weights: new ones for the best checkpoint's, filled by the val/test
        # passes below (no pass over the train split: nothing trains any more)
        recipe.phases.enter(best["epoch"], force=True, evaluate_only=True,
                            what=f"best checkpoint (epoch {best['epoch']}, chosen on val {best['metric']} "
                                 f"{best['value']:.4f})")
        result.update({"best_epoch": best["epoch"], "best_metric": best["metric"], "best_value": best["value"]})
    for split in ["val"] + (["test"] if recipe.has_test else []):
        metrics, preds = recipe.evaluate(split)
        result.update(scalar_metrics(metrics, f"{split}/"))
        result[f"{split}/confusion_matrix"] = metrics["confusion_matrix"]
        result[f"{split}/per_class"] = metrics["per_class"]
        recipe.logger.log_metrics(scalar_metrics(metrics, f"best/{split}/"), step=recipe.global_step)
        log.info("%s", format_metrics_table(metrics, recipe.classes, f"{split} split, best checkpoint"), extra=DETAIL)
        if env.is_main and recipe.logger.wants_figures:
            # Confusion matrix, per-class ROC, alpha per class and per correct/wrong, the curriculum used.
            log_evaluation_figures(recipe.logger, preds.targets.numpy(), preds.probs.numpy(), recipe.classes,
                                   alpha=preds.alpha.numpy() if preds.alpha.numel() else None,
                                   prefix=split, curriculum=curriculum_used(recipe))
    result["cache/hits"] = recipe.phases.cache_loads["hits"]
    result["cache/misses"] = recipe.phases.cache_loads["misses"]
    result["trained"] = what_trained(recipe)  # what the optimizer held, lambda/alpha per epoch, the descriptions
    # collective under ZeRO; the engine's optimizer holds the fp32 masters at ZeRO-0 bf16
    state = full_fp32_state_dict(recipe.model, recipe.engine.engine.optimizer)
    export_dir = recipe.run_dir / EXPORT_FOLDER
    # rank 0 exports and may register (an upload to the tracking server, unbounded): the others wait for it
    with rank0_alone(env, cfg.distributed.rank0_wait_s):
        if env.is_main:
            export_model(state, recipe.model, cfg.fusion.model, recipe.classes, export_dir,
                         image_size=cfg.data.loader.image_size,
                         # who wrote the training text (None: the shard set's own): predict compares its inputs'
                         extra={"best": best, "shards": str(cfg.data.shards),
                                "descriptions_written_by": result["trained"]["descriptions"]["describe"]})
            if recipe.model.image_encoder is not None:  # the run's tags name the encoder, its weights and licence
                prov = encoder_provenance(recipe.model.image_encoder)
                recipe.logger.set_tags({f"image_encoder.{k}": str(v) for k, v in prov.items()})
            # what `register` checks the export against: a changed or replaced export is refused
            record_export(recipe.logger, recipe.run_dir, export_dir)
            # atomic: `tracking import` reads this file as "the run finished"; a kill leaves none, never half
            write_result(recipe.run_dir, result)
            recipe.logger.log_artifact(export_dir / "model_config.json", "export")
            recipe.logger.log_artifact(recipe.run_dir / "metrics.json")
            if cfg.tracking.register_name:
                from .pyfunc_model import register_export

                result["registered"] = register_or_explain(
                    recipe.logger.run_id, recipe.logger.online, cfg.tracking.register_name, recipe.run_dir,
                    lambda run_id: register_export(cfg, run_id, export_dir))
    result["export_dir"] = str(export_dir)
    return result
