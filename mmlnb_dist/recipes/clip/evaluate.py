"""Evaluate a trained CLIP classifier's export on one split (`mmlnb-dist evaluate` with train.recipe=clip).

    mmlnb-dist evaluate --config clip-multilabel data.shards=... --export runs/<name>/export [--split test] [--json]

No training engine is built: the model is rebuilt with `export.load_exported_model` and each rank evaluates its
share of the split (exactly once across ranks); the metrics (`metrics.multilabel_metrics`, at the export's top-k)
are computed on the gathered scores, so they equal the run's own `metrics.json` for that split.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ...core.distributed import DistEnv, gather_tensors, init_process_group
from ...core.errors import UserError
from ...core.files import strict_json
from ...data.loader import build_loader
from ...data.preprocess import ImageSamplePreprocess, MultiHotLabel
from ...data.shardset import ShardSet
from .config import MAX_K, METRIC_NAMES, ClipModelConfig
from .metrics import multilabel_metrics, scalar_metrics

if TYPE_CHECKING:
    from ...config import Config


@torch.no_grad()
def evaluate_export(cfg: "Config", export_dir, split: str = "val",
                    env: Optional[DistEnv] = None) -> Tuple[Dict[str, Any], List[str]]:
    """Metrics of an export folder (`runs/<name>/export`) on `split` of `cfg.data.shards`, and its labels. The
    loss uses the run's `clip.pos_weight` (recorded in the export), so it is the run's loss whatever `cfg` says;
    an export written before the weights were recorded uses `cfg`'s."""
    from .export import load_exported_model
    from .model import check_captions

    env = env or DistEnv.from_environment()
    init_process_group(env, cfg.distributed)
    model, meta = load_exported_model(export_dir)
    classes = list(meta["classes"])
    shards = ShardSet.open(cfg.data.shards)
    shards.require_split(split, "the split to evaluate")
    if sorted(shards.classes) != sorted(classes):
        # only the same label set can be scored: a shard label without a logit column has no score
        missing = [c for c in shards.classes if c not in classes]
        extra = [c for c in classes if c not in shards.classes]
        raise UserError(f"the model's labels {classes} differ from the shards' {shards.classes} (data.shards "
                        f"{cfg.data.shards}): shard labels without a model column {missing}, model labels not in "
                        f"the shards {extra}; evaluate it on a shard set of its labels (e.g. the one it trained on)")
    # the same labels in another order are fine: the targets are built by label name in the model's column order
    # (MultiHotLabel(classes)), so every logit column is scored against the shards' label of its name
    # a caption-reading model scored on shards without captions would read empty text for every sample
    check_captions(ClipModelConfig.model_validate(meta["model"]), shards, splits=[split])  # the one scored
    pre = meta["preprocessing"]
    preprocess = ImageSamplePreprocess(int(meta["image_size"]), MultiHotLabel(classes), augment=False,
                                       mean=pre["image_mean"], std=pre["image_std"], text=True, device=env.device)
    loader = build_loader(shards, split, preprocess, cfg.data.loader, rank=env.rank, world_size=env.world_size,
                          batch_size=cfg.train.eval_batch_size or 64, mode="eval", seed=cfg.run.seed)
    model.to(env.device).eval()
    logits, labels = [], []
    for batch in loader:
        logits.append(model(**model.inputs(batch["image"], batch["text"], env.device)).float().cpu())
        labels.append(batch["label"].float())
    n = len(classes)
    local = (torch.cat(logits) if logits else torch.zeros(0, n), torch.cat(labels) if labels else torch.zeros(0, n))
    scores, targets = gather_tensors(env, local)
    loader.end_epoch()  # the bad-sample ledger of the pass (collective)
    metrics = multilabel_metrics(scores, targets, classes, int(meta["top_k"]), split)
    # the run's weights, recorded in its export; an export made before they were falls back to the config's
    pos_weight = meta["pos_weight"] if "pos_weight" in meta else cfg.clip.pos_weight
    weight = torch.tensor(pos_weight) if pos_weight is not None else None
    if model.head is not None:  # zero-shot: no loss, as in the run's own metrics.json (ClipRecipe.evaluate)
        metrics["loss"] = float(F.binary_cross_entropy_with_logits(scores, targets, pos_weight=weight))
    return metrics, classes


def format_metrics_table(metrics: Dict[str, Any], classes: List[str], title: str) -> str:
    """The scalar metrics (the seed's table, top-k prediction), then F1 per label and the excluded labels."""
    k = metrics["top_k"]
    lines = [title, f"  samples: {metrics['num_samples']}   prediction: top-{k} labels per sample"]
    # j-of-k beyond the named ones (clip.top_k > 3): metrics.json and MLflow hold them, the table shows them too
    beyond = [f"at_least_{j}_of_top_k" for j in range(MAX_K + 1, k + 1)]
    names = [m for m in (*METRIC_NAMES, *beyond, "loss") if m in metrics]
    width = max(len(m) for m in names)
    lines += [f"  {m:<{width}}  {metrics[m]:.4f}" for m in names]
    lines.append("  per-label F1 (top-k prediction):")
    width = max(len(c) for c in classes)
    absent = set(metrics.get("labels_without_positives") or ())  # nothing to find: their F1 says nothing
    lines += [f"    {c:<{width}}  {'n/a' if c in absent else f'{f:.4f}'}"
              for c, f in zip(classes, metrics["per_label_f1"])]
    if absent:  # the macro averages keep them as 0 (scikit-learn's zero_division=0): say so, names stay stable
        lines.append(f"  labels without positives (F1 n/a; they count 0 in macro F1, precision and recall, and are "
                     f"left out of macro AUROC): {', '.join(metrics['labels_without_positives'])}")
    if metrics.get("labels_without_negatives"):
        lines.append(f"  labels without negatives (left out of macro AUROC): "
                     f"{', '.join(metrics['labels_without_negatives'])}")
    return "\n".join(lines)


def track_evaluation(cfg: "Config", model: str, split: str, metrics: Dict[str, Any], classes: List[str]) -> None:
    """Log an evaluation as its own MLflow run (rank 0 inside build_logger): scalars and the per-label F1 chart."""
    from ...core.tracking import build_logger
    from .plots import per_label_f1_figure

    if "mlflow" not in cfg.tracking.backends:
        return  # the printed table (or JSON) is the stdout record
    tracking = cfg.tracking.model_copy(update={"backends": ["mlflow"]})
    run_dir = cfg.run.evaluation_dir(split)  # held by the evaluate command (commands/train.py)
    logger = build_logger(tracking, cfg.run, DistEnv.from_environment().rank, run_dir, "evaluate", config=cfg,
                          datasets=ShardSet.open(cfg.data.shards).dataset_specs(),
                          tags={"model": model, "split": split})
    logger.log_metrics(scalar_metrics(metrics, f"{split}/"), step=0)
    if logger.wants_figures:
        fig, _ = per_label_f1_figure({split: metrics["per_label_f1"]}, classes, metrics["top_k"])
        logger.log_figure(fig, f"per_label_f1_{split}.png")
    logger.close()


def evaluate_command(cfg: "Config", *, export: Optional[str], checkpoint: Optional[str], tag: Optional[str],
                     split: str, as_json: bool) -> str:
    """What `mmlnb-dist evaluate` prints for a clip config (a table, or JSON); tracks the evaluation."""
    if checkpoint or not export:
        raise UserError("evaluate --checkpoint: the clip recipe evaluates its export folder; pass "
                        "--export runs/<name>/export (written at the end of every run from the best checkpoint)")
    metrics, classes = evaluate_export(cfg, export, split)
    track_evaluation(cfg, str(export), split, metrics, classes)
    if as_json:
        # an undefined AUROC: null, not NaN; `classes` names per_label_f1's entries (the model's order, which may
        # differ from the shards')
        return json.dumps(strict_json({**metrics, "classes": list(classes)}), indent=2, allow_nan=False)
    return format_metrics_table(metrics, classes, f"{split} split ({export})")
