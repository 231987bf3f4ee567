"""How `predict`'s rows agree with the labels their inputs carry (labelled shards: the held-out split a pipeline
printed a `predict` line for). Rows of inputs without labels (plain image files) are left out; a run over none
of them has no agreement to report.

Single-label rows compare `label` (the prediction) with `true_label`: accuracy and balanced accuracy (the mean
recall over the true classes, as scikit-learn computes it), and per slide `label_majority` with the slide's
majority `true_label`. Multi-label rows compare the `labels` set with `true_labels`: micro F1 and exact match (a
true label the model does not predict is a miss: the full label sets are scored); a multi-label model's row of a
single-label input (`true_label` only) is compared with the one-label set {true_label}."""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["agreement", "agreement_lines"]


def _split(value: Any) -> List[str]:
    return [v for v in str(value or "").split("|") if v]


def _truth_set(row: Dict[str, Any]) -> List[str]:
    """A multi-label row's true labels: its set, or {true_label} for an input labelled with one class (a
    single-label shard set predicted by a multi-label model would otherwise report no agreement at all)."""
    return _split(row.get("true_labels")) or _split(row.get("true_label"))


def agreement(rows: List[Dict[str, Any]], slide_rows: Optional[List[Dict[str, Any]]],
              classes: Sequence[str], multilabel: bool) -> Optional[Dict[str, Any]]:
    """{"patches": {n, metrics...}, "slides": {n, accuracy} or None, "unknown": true classes the model does not
    predict (single-label: their rows left out; multi-label: counted, each a miss)}, or None when no row has a
    label."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    known = set(classes)
    if multilabel:
        labelled = [r for r in rows if _truth_set(r)]
        unknown = sorted({c for r in labelled for c in _truth_set(r)} - known)
        if not labelled:
            return None

        # a true label the model cannot predict is a miss (false negative), as scikit-learn scores the full sets:
        # dropping it let a row missing it count as an exact match and inflated micro F1
        columns = list(classes) + unknown

        def hot(names):
            return [int(c in set(names)) for c in columns]

        truth = [hot(_truth_set(r)) for r in labelled]
        pred = [hot(_split(r.get("labels"))) for r in labelled]
        patches = {"n": len(labelled), "micro_f1": float(f1_score(truth, pred, average="micro", zero_division=0)),
                   "exact_match": float(accuracy_score(truth, pred))}
        return {"patches": patches, "slides": None, "unknown": unknown, "multilabel": True}
    labelled = [r for r in rows if r.get("true_label")]
    unknown = sorted({r["true_label"] for r in labelled} - known)
    labelled = [r for r in labelled if r["true_label"] in known]
    if not labelled:
        return {"patches": {"n": 0}, "slides": None, "unknown": unknown, "multilabel": False} if unknown else None
    truth, pred = [r["true_label"] for r in labelled], [r["label"] for r in labelled]
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected on a small split
        warnings.simplefilter("ignore")
        patches = {"n": len(labelled), "accuracy": float(accuracy_score(truth, pred)),
                   "balanced_accuracy": float(balanced_accuracy_score(truth, pred))}
    slides = None
    judged = [s for s in slide_rows or [] if s.get("true_label") in known]
    if judged:
        slides = {"n": len(judged), "accuracy": float(accuracy_score([s["true_label"] for s in judged],
                                                                     [s["label_majority"] for s in judged]))}
    return {"patches": patches, "slides": slides, "unknown": unknown, "multilabel": False}


def agreement_lines(result: Optional[Dict[str, Any]]) -> List[str]:
    """`agreement`'s result as the lines `predict` prints."""
    if not result:
        return []
    p, lines = result["patches"], []
    if result["multilabel"]:
        lines.append(f"against the label sets of {p['n']} patch(es): micro F1 {p['micro_f1']:.3f}, exact match "
                     f"{p['exact_match']:.3f}")
    elif p["n"]:
        lines.append(f"against the labels of {p['n']} patch(es): accuracy {p['accuracy']:.3f}, balanced accuracy "
                     f"{p['balanced_accuracy']:.3f}")
    if result["slides"]:
        s = result["slides"]
        lines.append(f"per slide ({s['n']}, majority vote): accuracy {s['accuracy']:.3f}")
    if result["unknown"] and result["multilabel"]:
        lines.append(f"counted as misses: labels {', '.join(result['unknown'])}, which the model does not predict")
    elif result["unknown"]:
        lines.append(f"left out: patches labelled {', '.join(result['unknown'])}, which the model does not predict")
    return lines
