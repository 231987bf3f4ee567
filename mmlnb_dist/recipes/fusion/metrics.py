"""Classification metrics over a whole evaluation split, gathered across ranks.

The seven metrics of the paper's Table 1 plus the ordinal kappa:

    accuracy            share of correct predictions
    balanced_accuracy   mean per-class recall
    kappa               Cohen's kappa, UNWEIGHTED (chance-corrected agreement; label order does not matter)
    quadratic_kappa     Cohen's kappa, QUADRATIC weights on the ORDINAL order (UD < PD < D for the NB classes):
                        a UD/D confusion costs four times a UD/PD one. The authors weighted on PD=0, D=1, UD=2,
                        which is not ordinal; we remap to `ordinal_order` before weighting.
    f1_weighted, precision_weighted, recall_weighted   support-weighted averages over classes
    auroc               macro average of one-vs-rest ROC AUCs on the predicted probabilities

Plus a per-class report and the confusion matrix with ROWS = TRUTH, COLUMNS = PREDICTION (the authors' code
transposed it). Each rank holds predictions for its own samples (the eval loader yields each sample exactly
once across ranks, counts may differ); `core.distributed.gather_tensors` concatenates them in rank order.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy, multiclass_auroc, multiclass_cohen_kappa, multiclass_confusion_matrix,
    multiclass_f1_score, multiclass_precision, multiclass_recall,
)

from .config import METRIC_NAMES

NB_ORDINAL_ORDER = ("UD", "PD", "D")
"""Neuroblastoma subtypes from least to most differentiated."""


def ordinal_permutation(classes: Sequence[str], ordinal_order: Optional[Sequence[str]] = None) -> List[int]:
    """rank[i] = position of class i in the ordinal order. Default: UD<PD<D when the classes are exactly those,
    else the manifest's class order is taken as ordinal."""
    if ordinal_order is None:
        ordinal_order = NB_ORDINAL_ORDER if set(classes) == set(NB_ORDINAL_ORDER) else list(classes)
    if sorted(ordinal_order) != sorted(classes):
        raise ValueError(f"ordinal order {list(ordinal_order)} does not list the classes {list(classes)}")
    return [list(ordinal_order).index(c) for c in classes]


def compute_metrics(probs: torch.Tensor, targets: torch.Tensor, classes: Sequence[str],
                    ordinal_order: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Scalar metrics (floats, fractions not %), plus `per_class` and `confusion_matrix` (rows = truth)."""
    n = len(classes)
    probs = probs.float()
    targets = targets.long()
    preds = probs.argmax(-1)
    out: Dict[str, Any] = {
        "accuracy": multiclass_accuracy(preds, targets, n, average="micro"),
        "balanced_accuracy": multiclass_recall(preds, targets, n, average="macro"),
        "kappa": multiclass_cohen_kappa(preds, targets, n, weights=None),
        "f1_weighted": multiclass_f1_score(preds, targets, n, average="weighted"),
        "precision_weighted": multiclass_precision(preds, targets, n, average="weighted"),
        "recall_weighted": multiclass_recall(preds, targets, n, average="weighted"),
        "auroc": multiclass_auroc(probs, targets, n, average="macro", thresholds=None),
    }
    rank = torch.tensor(ordinal_permutation(classes, ordinal_order))
    out["quadratic_kappa"] = multiclass_cohen_kappa(rank[preds], rank[targets], n, weights="quadratic")
    out = {k: float(out[k]) for k in METRIC_NAMES}
    cm = multiclass_confusion_matrix(preds, targets, n)  # torchmetrics: rows = target, columns = prediction
    prec = multiclass_precision(preds, targets, n, average=None)
    rec = multiclass_recall(preds, targets, n, average=None)
    f1 = multiclass_f1_score(preds, targets, n, average=None)
    out["per_class"] = {
        c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(cm[i].sum())}
        for i, c in enumerate(classes)
    }
    out["confusion_matrix"] = cm.tolist()
    out["num_samples"] = int(targets.numel())
    return out


def scalar_metrics(metrics: Dict[str, Any], prefix: str = "") -> Dict[str, float]:
    """Only the scalar entries, with an optional `val/`-style prefix (for loggers and `report`)."""
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def format_metrics_table(metrics: Dict[str, Any], classes: Sequence[str], title: str = "") -> str:
    """A plain-text table: the scalar metrics in %, the per-class report, and the confusion matrix."""
    lines = [title] if title else []
    labels = {"accuracy": "Acc", "balanced_accuracy": "BAcc", "kappa": "Kappa", "quadratic_kappa": "QWK(ord)",
              "f1_weighted": "F1(w)", "precision_weighted": "Prec(w)", "recall_weighted": "Rec(w)",
              "auroc": "AUROC"}
    lines.append(" | ".join(f"{labels[k]:>8}" for k in METRIC_NAMES))
    lines.append(" | ".join(f"{100 * metrics[k]:8.2f}" for k in METRIC_NAMES))
    lines.append("Kappa = unweighted Cohen's kappa; QWK(ord) = quadratic-weighted kappa on the ordinal order.")
    lines.append(f"{'class':>8} {'prec':>6} {'rec':>6} {'f1':>6} {'n':>6}")
    for c in classes:
        r = metrics["per_class"][c]
        lines.append(f"{c:>8} {r['precision']:6.3f} {r['recall']:6.3f} {r['f1']:6.3f} {r['support']:6d}")
    width = max(6, max(len(c) for c in classes) + 1)
    lines.append("confusion matrix (rows = truth, columns = prediction)")
    lines.append(" " * width + "".join(f"{c:>{width}}" for c in classes))
    for c, row in zip(classes, metrics["confusion_matrix"]):
        lines.append(f"{c:>{width}}" + "".join(f"{v:>{width}d}" for v in row))
    return "\n".join(lines)
