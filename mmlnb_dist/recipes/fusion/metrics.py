"""Classification metrics over a whole evaluation split, gathered across ranks.

The seven metrics of the paper's Table 1 plus the ordinal kappa:

    accuracy            share of correct predictions
    balanced_accuracy   mean per-class recall over the classes PRESENT in the targets (scikit-learn's
                        balanced_accuracy_score: a class absent from a small split is not a zero recall)
    kappa               Cohen's kappa, UNWEIGHTED (chance-corrected agreement; label order does not matter)
    quadratic_kappa     Cohen's kappa, QUADRATIC weights on the ORDINAL order (UD < PD < D for the NB classes):
                        a UD/D confusion costs four times a UD/PD one. The authors weighted on PD=0, D=1, UD=2,
                        which is not ordinal; we remap to `ordinal_order` before weighting.
    f1_weighted, precision_weighted, recall_weighted   support-weighted averages over classes
    auroc               macro average of one-vs-rest ROC AUCs on the predicted probabilities, over the classes
                        PRESENT in the targets (an absent class has no positive: its AUC is undefined, not 0);
                        NaN when fewer than two classes are present. The absent classes are listed in
                        `absent_classes` and in the printed table.

Plus a per-class report and the confusion matrix with ROWS = TRUTH, COLUMNS = PREDICTION (the authors' code
transposed it). Each rank holds predictions for its own samples (the eval loader yields each sample exactly
once across ranks, counts may differ); `core.distributed.gather_tensors` concatenates them in rank order.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import torch
from torchmetrics.functional.classification import (
    binary_auroc, multiclass_accuracy, multiclass_cohen_kappa, multiclass_confusion_matrix, multiclass_f1_score,
    multiclass_precision, multiclass_recall,
)

from ...core.errors import UserError
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


def check_predictions(probs: torch.Tensor, targets: torch.Tensor, n_classes: int, split: str) -> None:
    """Predictions metrics can be computed on: some samples, one row of finite probabilities per target."""
    if targets.numel() == 0:
        raise UserError(f"split '{split}' has no samples to compute metrics on; give it samples (raise "
                        f"data.build.val_fraction / data.build.test_fraction, or build from more slides) or "
                        f"evaluate another split")
    if probs.shape != (targets.numel(), n_classes):
        raise UserError(f"split '{split}': predictions of shape {tuple(probs.shape)} for {targets.numel()} targets "
                        f"and {n_classes} classes")
    bad = ~torch.isfinite(probs).all(-1)
    if bool(bad.any()):
        raise UserError(f"split '{split}': {int(bad.sum())} of {targets.numel()} predictions have non-finite "
                        f"(NaN or inf) probabilities, first at row {int(bad.nonzero()[0])}; the model diverged "
                        f"(lower train.lr, or use distributed.precision fp32/bf16 instead of fp16)")


def macro_auroc_present(probs: torch.Tensor, targets: torch.Tensor, present: List[int]) -> float:
    """Mean one-vs-rest ROC AUC over the classes present in the targets; NaN with fewer than two present."""
    if len(present) < 2:
        return float("nan")
    return float(torch.stack([binary_auroc(probs[:, c], (targets == c).long(), thresholds=None)
                              for c in present]).mean())


def compute_metrics(probs: torch.Tensor, targets: torch.Tensor, classes: Sequence[str],
                    ordinal_order: Optional[Sequence[str]] = None, split: str = "eval") -> Dict[str, Any]:
    """Scalar metrics (floats, fractions not %), plus `per_class`, `confusion_matrix` (rows = truth) and
    `absent_classes` (classes with no sample in the targets). `split` names the split in errors: an empty split
    or non-finite probabilities raise a UserError."""
    n = len(classes)
    probs = probs.float()
    targets = targets.long()
    check_predictions(probs, targets, n, split)
    preds = probs.argmax(-1)
    cm = multiclass_confusion_matrix(preds, targets, n)  # torchmetrics: rows = target, columns = prediction
    support = cm.sum(1)
    present = [i for i in range(n) if int(support[i]) > 0]
    rec = multiclass_recall(preds, targets, n, average=None)
    out: Dict[str, Any] = {
        "accuracy": multiclass_accuracy(preds, targets, n, average="micro"),
        "balanced_accuracy": rec[present].mean(),
        "kappa": multiclass_cohen_kappa(preds, targets, n, weights=None),
        "f1_weighted": multiclass_f1_score(preds, targets, n, average="weighted"),
        "precision_weighted": multiclass_precision(preds, targets, n, average="weighted"),
        "recall_weighted": multiclass_recall(preds, targets, n, average="weighted"),
        "auroc": macro_auroc_present(probs, targets, present),
    }
    rank = torch.tensor(ordinal_permutation(classes, ordinal_order))
    out["quadratic_kappa"] = multiclass_cohen_kappa(rank[preds], rank[targets], n, weights="quadratic")
    out = {k: float(out[k]) for k in METRIC_NAMES}
    prec = multiclass_precision(preds, targets, n, average=None)
    f1 = multiclass_f1_score(preds, targets, n, average=None)
    out["per_class"] = {
        c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, c in enumerate(classes)
    }
    out["confusion_matrix"] = cm.tolist()
    out["num_samples"] = int(targets.numel())
    out["absent_classes"] = [c for i, c in enumerate(classes) if i not in present]
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
    absent = metrics.get("absent_classes") or []
    if absent:
        lines.append(f"classes absent from this split: {', '.join(absent)} (left out of BAcc and AUROC)")
    if math.isnan(metrics["auroc"]):
        lines.append("AUROC undefined: fewer than two classes present in this split")
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
