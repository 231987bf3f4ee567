"""Evaluate a trained fusion classifier on one split, from its export or from a checkpoint's fp32 weights.

No training engine is built: the model is rebuilt from the export (or from `fusion.model` for a checkpoint) and
its weights loaded as a plain state dict. Works as one process or under a launcher: each rank evaluates its
share of the split (exactly once across ranks) and the metrics are computed on the gathered predictions.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import torch

from ...core.checkpoint import fp32_state_dict_from_checkpoint
from ...core.distributed import DistEnv, init_process_group
from ...core.errors import UserError
from ...data.loader import build_loader
from ...data.shardset import ShardSet
from ...data.text_writer import mismatch, same_writer, shard_text_writer, trained_writer
from .checks import train_has_descriptions, undescribed
from .steps import evaluate, preprocess_for

if TYPE_CHECKING:
    from ...config import Config

log = logging.getLogger(__name__)


class _ModelClassIndex:
    """A shard set's class index (`label`) as the index of the same class name among the model's classes: a set of
    the model's classes listed in another order is scored against the logit column of each sample's own class."""

    def __init__(self, label, shard_classes: List[str], model_classes: List[str]):
        self.label, self.to_model = label, [list(model_classes).index(c) for c in shard_classes]

    def __call__(self, raw: Dict[str, Any], meta: Dict[str, Any]) -> int:
        return self.to_model[self.label(raw, meta)]


def _evaluate(cfg: "Config", model: torch.nn.Module, classes: List[str], split: str, image_size: int,
              env: DistEnv, image_encoder: Optional[str],
              normalisation: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    shards = ShardSet.open(cfg.data.shards)
    shards.require_split(split, "the split to evaluate")
    if sorted(shards.classes) != sorted(classes):
        raise UserError(f"the model's classes {list(classes)} differ from the shards' {shards.classes} (data.shards "
                        f"{cfg.data.shards}): its logit columns would be scored against other labels. Evaluate on a "
                        f"shard set of these classes (data.shards=DIR, e.g. the set it trained on; without --config "
                        f"the run's own config.yaml names it)")
    if getattr(model, "text_encoder", None) is not None and not train_has_descriptions(shards):
        # the shard set before `describe` (a common slip): the text branch would read empty strings
        raise UserError(f"the model reads descriptions, but data.shards {shards.root} carries no descriptions (no "
                        f"`txt` members): its metrics would be those of empty text. Evaluate on the described "
                        f"shard set (`describe`'s output, which the pipeline writes to <shards>-described)")
    partly = undescribed(shards, [split]) if getattr(model, "text_encoder", None) is not None else ""
    if partly:  # a set described in part: its metrics would score empty text for the rest
        raise UserError(f"the model reads descriptions, but samples of the {split} split of data.shards {shards.root} "
                        f"carry none ({partly}): their scores would be those of empty text. Evaluate on a shard set "
                        f"with a description for every patch (`describe`'s output)")
    # The image encoder's own normalisation, as in training (`steps.preprocess_for`).
    preprocess = preprocess_for(shards.classes, image_size, augment=False, image_encoder=image_encoder,
                                normalisation=normalisation, device=env.device)
    if shards.classes != list(classes):  # the same classes in another order: each label read by its name
        preprocess.label = _ModelClassIndex(preprocess.label, shards.classes, classes)
    loader = build_loader(shards, split, preprocess, cfg.data.loader, rank=env.rank, world_size=env.world_size,
                          batch_size=cfg.train.eval_batch_size or 64, mode="eval", seed=cfg.run.seed)
    model.to(env.device).eval()
    metrics, _ = evaluate(model, model, loader, {}, env, list(classes))
    return metrics


def evaluate_export(cfg: "Config", export_dir, split: str = "val",
                    env: Optional[DistEnv] = None) -> Tuple[Dict[str, Any], List[str]]:
    """Metrics of an export folder (`runs/<name>/export`) on `split` of `cfg.data.shards`."""
    from .export import load_exported_model, read_export_config

    env = env or DistEnv.from_environment()
    init_process_group(env, cfg.distributed)
    model, _, classes = load_exported_model(export_dir, env.device)
    meta, _ = read_export_config(export_dir)
    trained = trained_writer(meta)
    if getattr(model, "text_encoder", None) is not None and trained is not None:
        writer = shard_text_writer(ShardSet.open(cfg.data.shards).manifest)
        if not same_writer(writer, trained):
            log.warning("%s", mismatch(str(export_dir), trained, writer, f"the shards {cfg.data.shards}",
                                       shards=str(cfg.data.shards)))
    size = int(meta.get("image_size", cfg.data.loader.image_size))
    pre = meta.get("preprocessing") or {}
    recorded = {"mean": pre["image_mean"], "std": pre["image_std"]} if "image_mean" in pre else None
    return _evaluate(cfg, model, classes, split, size, env, meta["image_encoder"], recorded), classes


TRAINED_MODEL_SETTINGS = ("fusion.model", "data.loader.image_size")
"""What a checkpoint's weights need to compute what they computed in training. Some change no weight's shape (the
text pooling, the token limit, the fixed alpha, the image size), so only the run's config can tell."""


def trained_model_config(cfg: "Config", ckpt_dir) -> "Config":
    """`cfg` with the model settings (`TRAINED_MODEL_SETTINGS`) of the run whose checkpoints are `ckpt_dir`, read
    from the run's `config.yaml` beside it; the differences from `cfg` are logged. Without that file, `cfg` as it
    is, with a warning. A run trained on other classes (its shard set's manifest, when still there) is refused."""
    import yaml

    from ...core.config import flatten
    from .config import FusionModelConfig

    run_config = Path(ckpt_dir).parent / "config.yaml"
    if not run_config.is_file():
        log.warning("%s has no config.yaml beside it (not in its run folder): the model is built from the given "
                    "config's %s, which must be the ones it was trained with", ckpt_dir,
                    " and ".join(TRAINED_MODEL_SETTINGS))
        return cfg
    stored = yaml.safe_load(run_config.read_text()) or {}
    data = stored.get("data") or {}
    out = cfg.model_copy(deep=True)
    out.fusion.model = FusionModelConfig(**((stored.get("fusion") or {}).get("model") or {}))
    out.data.loader.image_size = int((data.get("loader") or {}).get("image_size", cfg.data.loader.image_size))
    given, used = flatten(cfg), flatten(out)
    changed = [f"{k}={used[k]}" for k in sorted(used) if k.startswith(TRAINED_MODEL_SETTINGS) and used[k] != given[k]]
    log.info("the model is built as its run trained it (%s)%s", run_config,
             f"; differs from the given config in {', '.join(changed)}" if changed else "")
    was = _trained_classes(run_config.parent)
    if was is None and data.get("shards") and (Path(data["shards"]) / "manifest.json").is_file():
        was = ShardSet.open(data["shards"]).classes  # (a run from before datasets.json: its set as it is now)
    if was is not None:
        now = ShardSet.open(cfg.data.shards).classes
        if was != now:
            raise UserError(f"{ckpt_dir} was trained on the classes {was} (its shard set {data.get('shards')}); "
                            f"data.shards {cfg.data.shards} has {now}: its labels would be read as other classes")
    return out


def _trained_classes(run_dir: Path) -> Optional[List[str]]:
    """The classes, in index order, of the shard set the run in `run_dir` trained on, as recorded when it trained
    (`datasets.json`): its shard set may be gone since, or rebuilt in place with other classes."""
    from ...core.tracking.lineage import recorded_datasets

    for spec in recorded_datasets(run_dir, "train") or []:
        classes = (spec.get("profile") or {}).get("classes")
        if spec.get("context") == "train" and classes:
            return list(classes)
    return None


def evaluate_checkpoint(cfg: "Config", ckpt_dir, split: str = "val", tag: Optional[str] = None,
                        env: Optional[DistEnv] = None) -> Tuple[Dict[str, Any], List[str]]:
    """Rebuild the model from `cfg.fusion.model`, load a checkpoint's consolidated fp32 weights (default: the
    best tag, else the latest) and evaluate. Encoders are built without pretrained weights: the checkpoint holds
    all of them."""
    from .model import build_classifier

    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise UserError(f"checkpoint folder not found: {ckpt_dir}")
    env = env or DistEnv.from_environment()
    init_process_group(env, cfg.distributed)
    classes = ShardSet.open(cfg.data.shards).classes
    model_cfg = cfg.fusion.model.model_copy(deep=True)
    model_cfg.image_encoder.pretrained = False
    model_cfg.image_encoder.weights_path = None
    model = build_classifier(model_cfg, len(classes))
    loaded, state = fp32_state_dict_from_checkpoint(ckpt_dir, tag)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # PyTorch's "size mismatch for ..." / "Missing key(s)" traceback
        lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        raise UserError(f"the weights of {ckpt_dir} ({loaded}) do not fit the model built from fusion.model for "
                        f"{len(classes)} classes ({', '.join(classes)}; data.shards {cfg.data.shards}):\n  "
                        + "\n  ".join(lines[:5]) + "\nEvaluate with the config and shard set the run trained "
                        "with (its config.yaml, beside its checkpoints folder)") from None
    metrics = _evaluate(cfg, model, classes, split, cfg.data.loader.image_size, env,
                        model.image_encoder.name if model.image_encoder is not None else None)
    metrics["checkpoint_tag"] = loaded
    return metrics, classes


def track_evaluation(cfg: "Config", model: str, split: str, metrics: Dict[str, Any], classes: List[str]) -> None:
    """Log an evaluation as its own MLflow run (rank 0 inside build_logger): metrics and confusion matrix."""
    from ...core.tracking import build_logger
    from .metrics import scalar_metrics
    from .plots import confusion_matrix_figure

    if "mlflow" not in cfg.tracking.backends:
        return  # the printed table (or JSON) is the stdout record
    tracking = cfg.tracking.model_copy(update={"backends": ["mlflow"]})
    run_dir = cfg.run.evaluation_dir(split)  # held by the evaluate command (commands/train.py)
    specs = ShardSet.open(cfg.data.shards).dataset_specs()
    logger = build_logger(tracking, cfg.run, DistEnv.from_environment().rank, run_dir, "evaluate", config=cfg,
                          datasets=specs, tags={"model": model, "split": split})
    logger.log_metrics(scalar_metrics(metrics, f"{split}/"), step=0)
    if logger.wants_figures:
        cm = metrics["confusion_matrix"]
        y_true = [i for i, row in enumerate(cm) for j, n in enumerate(row) for _ in range(n)]
        y_pred = [j for i, row in enumerate(cm) for j, n in enumerate(row) for _ in range(n)]
        logger.log_figure(confusion_matrix_figure(y_true, y_pred, classes, title=f"Confusion matrix ({split})"),
                          f"confusion_{split}.png")
    logger.close()
