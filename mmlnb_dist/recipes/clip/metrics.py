"""Multi-label metrics over a whole evaluation split (the seed's table), gathered across ranks first.

Threshold-free: micro AUROC over all (sample, label) pairs; macro AUROC over the labels that have both positives
and negatives in the split; the others are listed (`labels_without_positives`, `labels_without_negatives`), not
silently dropped. On the top-k prediction (the k highest-scoring labels of a sample are predicted positive, the
rest negative): micro and macro F1, precision and recall (an undefined per-label value counts 0, as scikit-learn's
`zero_division=0`), Hamming loss, and j-of-k accuracy: the share of samples with at least j true labels among their
top k (j = 1..k; a sample with fewer than j true labels can never count).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import torch

from ...core.distributed import DistEnv, gather_tensors
from ...core.errors import ConfigError, UserError


def top_k_prediction(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Long [N, L]: 1 for the k highest-scoring labels of each sample; among tied scores the lower label index
    first, as `predict` chooses (`pyfunc_model.select_labels`): torch.topk's choice among ties is unspecified, and
    bf16 logits tie often."""
    pred = torch.zeros_like(scores, dtype=torch.long)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    return pred.scatter_(1, order[:, :k], 1)


def multilabel_metrics(scores: torch.Tensor, targets: torch.Tensor, classes: Sequence[str], k: int,
                       split: str = "?") -> Dict[str, Any]:
    """Scalars named as config.METRIC_NAMES (plus `at_least_{j}_of_top_k` up to k), `num_samples`, the
    excluded-label lists and `per_label_f1` (vocabulary order; None for a label without positives). `scores`
    are logits or probabilities [N, L], `targets` multi-hot [N, L]; non-finite scores raise a UserError naming
    `split` (metrics of NaN scores read like a poor model, not a broken one)."""
    from torchmetrics.functional.classification import (multilabel_auroc, multilabel_f1_score,
                                                        multilabel_hamming_distance, multilabel_precision,
                                                        multilabel_recall)

    n_labels = len(classes)
    if not 1 <= k <= n_labels:
        raise ValueError(f"clip.top_k: {k} must be between 1 and the number of labels ({n_labels})")
    scores = scores.detach().float().cpu()
    bad = ~torch.isfinite(scores).all(-1)
    if bool(bad.any()):
        raise UserError(f"split '{split}': {int(bad.sum())} of {len(scores)} samples have non-finite (NaN or inf) "
                        f"scores, first at row {int(bad.nonzero()[0])}; the model's weights are not finite (it "
                        f"diverged in training, or its files were altered)")
    target = targets.detach().cpu().round().long()
    pred = top_k_prediction(scores, k)
    positives = target.sum(0)
    defined = [i for i in range(n_labels) if 0 < int(positives[i]) < len(target)]
    out: Dict[str, Any] = {"num_samples": int(len(target)), "top_k": k,
                           "labels_without_positives": [classes[i] for i in range(n_labels) if positives[i] == 0],
                           "labels_without_negatives": [classes[i] for i in range(n_labels)
                                                        if positives[i] == len(target)]}
    # AUROC reads only the order of the scores: their dense ranks over the whole split, scaled into [0, 1] (a
    # float32 sigmoid rounds CLIP-scale logits, zero-shot's 15-35, all to 1.0 and ties them)
    ranks = torch.unique(scores, return_inverse=True)[1].double()
    probs = ranks / max(float(ranks.max()), 1.0) if ranks.numel() else ranks
    # undefined when every (sample, label) pair is of one kind: NaN as macro AUROC's, not torchmetrics' 0.0
    pairs = int(target.sum())
    out["micro_auroc"] = (float(multilabel_auroc(probs, target, n_labels, average="micro"))
                          if 0 < pairs < target.numel() else float("nan"))
    out["macro_auroc"] = (float(multilabel_auroc(probs[:, defined], target[:, defined], len(defined),
                                                 average="macro")) if len(defined) > 1 else
                          _binary_auroc(probs, target, defined))
    hard = pred.float()  # thresholded at 0.5 by torchmetrics: exactly the top-k prediction
    for avg in ("micro", "macro"):
        out[f"{avg}_f1"] = float(multilabel_f1_score(hard, target, n_labels, average=avg, zero_division=0))
        out[f"{avg}_precision"] = float(multilabel_precision(hard, target, n_labels, average=avg, zero_division=0))
        out[f"{avg}_recall"] = float(multilabel_recall(hard, target, n_labels, average=avg, zero_division=0))
    out["hamming_loss"] = float(multilabel_hamming_distance(hard, target, n_labels, average="micro"))
    hits = (pred * target).sum(1)  # true labels among the top k
    for j in range(1, k + 1):
        out[f"at_least_{j}_of_top_k"] = float((hits >= j).float().mean())
    per_label = multilabel_f1_score(hard, target, n_labels, average="none", zero_division=0)
    # a label without positives has no F1 (None: null in JSON, a gap in the chart); a 0.0 would read as a label
    # the model always misses. The macro averages above still count it as 0, as scikit-learn does.
    out["per_label_f1"] = [float(v) if int(positives[i]) > 0 else None for i, v in enumerate(per_label)]
    return out


def _binary_auroc(probs: torch.Tensor, target: torch.Tensor, defined: List[int]) -> float:
    from torchmetrics.functional.classification import binary_auroc

    if not defined:
        return float("nan")  # no label has both positives and negatives: undefined, never the best
    return float(binary_auroc(probs[:, defined[0]], target[:, defined[0]]))


def check_best_metric(metric: str, label_counts: Mapping[str, int], n: int, split: str = "val") -> None:
    """A ConfigError when `metric` (train.best_metric) is undefined on a split of `n` samples with these label
    counts (samples holding each label): macro AUROC needs a label with both positives and negatives, micro AUROC
    both kinds of (sample, label) pair. NaN at every evaluation, no checkpoint would ever be the best. No counts
    (a manifest written without them): nothing to check."""
    if not label_counts:
        return
    total = sum(label_counts.values())
    if metric == "macro_auroc" and n and not any(0 < c < n for c in label_counts.values()):
        why = "no label has both positives and negatives"
    elif metric == "micro_auroc" and n and not 0 < total < n * len(label_counts):
        why = "its (sample, label) pairs are all " + ("positive" if total else "negative")
    else:
        return
    raise ConfigError(f"train.best_metric: {metric} is undefined on the {split} split ({why} among its {n} samples; "
                      f"labels {', '.join(f'{c} {k}' for c, k in label_counts.items())}), so no checkpoint would be "
                      f"the best; choose another metric (micro_f1, loss) or rebuild the shards with a larger "
                      f"{split} split")


def within_top_k(name: str, top_k: int) -> bool:
    """Whether metric `name` has a value at `top_k`: a run reports `at_least_{j}_of_top_k` for j <= top_k only."""
    return not name.startswith("at_least_") or int(name.split("_")[2]) <= top_k


def check_metric_config(cfg: Any) -> None:
    """A ConfigError when `cfg` picks, searches or registers by a metric its runs never report: `at_least_j` with
    j above clip.top_k, or the loss of a zero-shot run (`ClipRecipe.evaluate` leaves it out: a BCE of scaled
    cosines measures nothing). Found before any work, not as a missing value once the run ends."""
    from .config import METRIC_NAMES

    best, top_k = cfg.train.best_metric, cfg.clip.top_k
    if not within_top_k(best, top_k):
        raise ConfigError(f"train.best_metric: '{best}' needs clip.top_k >= {best.split('_')[2]} "
                          f"(clip.top_k is {top_k})")
    if cfg.clip.model.fusion != "zero_shot":
        return
    reported = [m for m in METRIC_NAMES if within_top_k(m, top_k)]
    for key, metric in (("train.best_metric", best), ("tune.metric", cfg.tune.metric),
                        ("tracking.register_metric", cfg.tracking.register_metric)):
        if metric and metric.rsplit("/", 1)[-1] == "loss":
            raise ConfigError(f"{key}: '{metric}' is the loss, which clip.model.fusion=zero_shot runs do not report "
                              f"(nothing trains; a BCE of scaled cosines measures nothing); choose one of "
                              f"{', '.join(reported)}")


def gathered_metrics(env: DistEnv, scores: torch.Tensor, targets: torch.Tensor, classes: Sequence[str],
                     k: int, split: str = "?") -> Dict[str, Any]:
    """`multilabel_metrics` over every rank's share of the split (uneven shares are fine; each sample once)."""
    scores, targets = gather_tensors(env, (scores.float(), targets.float()))
    return multilabel_metrics(scores, targets, classes, k, split)


def scalar_metrics(metrics: Dict[str, Any], prefix: str = "") -> Dict[str, float]:
    """The loggable scalars of an evaluation (lists and the top_k setting dropped), with a prefix."""
    return {f"{prefix}{name}": float(value) for name, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name != "top_k"}
