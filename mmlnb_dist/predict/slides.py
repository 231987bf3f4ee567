"""Per-slide aggregates of `predict`'s rows: mean probabilities, the majority vote (single-label) or the label set
chosen from the mean probabilities (multi-label)."""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict, Iterable, List, Optional, Sequence

NO_READABLE_PATCH = "no readable patch: its inputs are listed in the skipped file"


def _by_slide(rows: List[Dict[str, Any]], slides: Iterable[Optional[str]] = ()) -> Dict[str, List[Dict[str, Any]]]:
    """The rows by slide id, in order of the ids; every id of `slides` (the inputs' slides) is there, with no rows
    when none of its patches could be read: such a slide would otherwise drop out of the slides file unnoticed."""
    by_slide: Dict[str, List[Dict[str, Any]]] = {str(s): [] for s in slides if s}
    for r in rows:
        if r.get("slide_id"):
            by_slide.setdefault(str(r["slide_id"]), []).append(r)
    return dict(sorted(by_slide.items()))


def _unread(slide: str) -> Dict[str, Any]:
    """The row of a slide none of whose patches was read: no patch, no label, and why."""
    return {"slide_id": slide, "n_patches": 0, "note": NO_READABLE_PATCH}


def multilabel_slide_aggregates(rows: List[Dict[str, Any]], classes: Sequence[str], top_k: int,
                                threshold: float = 0.0, slides: Iterable[Optional[str]] = ()) -> List[Dict[str, Any]]:
    """Per slide: patch count, mean probability per label, and the label set chosen from those means by the same
    rule as the patches' (`threshold` > 0: every label with mean >= threshold; else the `top_k` highest). A slide of
`slides` without rows gets a row of 0 patches, an empty label set and a note."""
    from ..recipes.clip.pyfunc_model import select_labels, selection_name

    out = []
    for slide, rs in _by_slide(rows, slides).items():
        if not rs:
            out.append({**_unread(slide), "labels": ""})
            continue
        mean = [sum(float(r[f"prob_{c}"]) for r in rs) / len(rs) for c in classes]
        chosen = select_labels([mean], top_k, threshold)[0]
        row = {"slide_id": slide, "n_patches": len(rs), "labels": "|".join(classes[i] for i in chosen),
               "selection": selection_name(top_k, threshold)}
        row.update({f"mean_prob_{c}": m for c, m in zip(classes, mean)})
        out.append(row)
    return out


def slide_aggregates(rows: List[Dict[str, Any]], classes: Sequence[str],
                     slides: Iterable[Optional[str]] = ()) -> List[Dict[str, Any]]:
    """Per slide: patch count, mean probability per class, its argmax, and the majority vote of patch labels
    (ties broken by the higher mean probability). A slide of `slides` without rows gets a row of 0 patches, empty
    labels and a note."""
    out = []
    for slide, rs in _by_slide(rows, slides).items():
        if not rs:
            out.append({**_unread(slide), "label_mean_prob": "", "label_majority": ""})
            continue
        mean = {c: sum(float(r[f"prob_{c}"]) for r in rs) / len(rs) for c in classes}
        votes = Counter(r["label"] for r in rs)
        top = max(votes.values())
        majority = max((c for c in classes if votes.get(c) == top), key=lambda c: mean[c])
        row = {"slide_id": slide, "n_patches": len(rs), "label_mean_prob": max(classes, key=lambda c: mean[c]),
               "label_majority": majority}
        truth = Counter(r["true_label"] for r in rs if r.get("true_label"))
        if truth:  # labelled shards: the slide's majority label (ties: the first name in sorted order)
            row["true_label"] = min(c for c, n in truth.items() if n == max(truth.values()))
        row.update({f"mean_prob_{c}": mean[c] for c in classes})
        row.update({f"votes_{c}": votes.get(c, 0) for c in classes})
        out.append(row)
    return out


