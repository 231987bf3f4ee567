"""The CLIP recipe's multi-label metrics at their edges, against scikit-learn: k equal to the number of labels, a
label with no negatives (left out of macro AUROC, listed), a single label with both classes (its own AUROC, not
label 0's), none (NaN, never a best value), and a label never predicted with no positives (counted 0 in the macro
averages, as `zero_division=0`). And `scalar_metrics`: only the loggable numbers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from mmlnb_dist.recipes.clip.metrics import multilabel_metrics, scalar_metrics, top_k_prediction


def _data(n=40, labels=5, seed=0):
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, labels)) < 0.4).astype(np.float32)
    scores = rng.normal(size=(n, labels)).astype(np.float32) + 1.2 * targets
    return scores, targets


def _names(n):
    return [f"l{i}" for i in range(n)]


def test_k_equal_to_the_number_of_labels_is_allowed_and_predicts_every_label():
    """Guards the k range: 1..number of labels inclusive (k = L predicts every label: recall 1)."""
    scores, targets = _data(labels=4)
    got = multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets), _names(4), 4)
    assert got["micro_recall"] == pytest.approx(1.0)
    assert got["micro_precision"] == pytest.approx(targets.mean(), abs=1e-6)
    with pytest.raises(ValueError, match="top_k"):
        multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets), _names(4), 0)


def test_a_label_without_negatives_is_listed_and_left_out_of_macro_auroc_like_sklearn():
    """Guards the `defined` labels: 0 < positives < N, both ends excluded from macro AUROC."""
    scores, targets = _data()
    targets[:, 1] = 1.0  # every sample has l1
    targets[:, 3] = 0.0  # no sample has l3
    targets[:, 0], targets[7, 0] = 1.0, 0.0  # l0: one negative, still defined
    got = multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets), _names(5), 2)
    assert got["labels_without_negatives"] == ["l1"] and got["labels_without_positives"] == ["l3"]
    both = [0, 2, 4]
    ref = roc_auc_score(targets[:, both].astype(int), scores[:, both], average="macro")
    assert got["macro_auroc"] == pytest.approx(ref, abs=1e-6)
    assert got["micro_auroc"] == pytest.approx(roc_auc_score(targets.astype(int), scores, average="micro"), abs=1e-6)


def test_one_label_with_both_classes_gives_its_own_auroc_and_none_gives_nan():
    """Guards the single-label fallback (the defined label, not the first one) and the undefined case (NaN)."""
    scores, targets = _data(labels=4)
    targets[:, [0, 1]] = 0.0
    targets[:, 3] = 1.0  # only l2 has positives and negatives
    got = multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets), _names(4), 1)
    assert got["macro_auroc"] == pytest.approx(roc_auc_score(targets[:, 2].astype(int), scores[:, 2]), abs=1e-6)
    targets[:, 2] = 0.0
    got = multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets), _names(4), 1)
    assert math.isnan(got["macro_auroc"])


def test_a_label_never_predicted_without_positives_counts_zero_in_the_macro_averages():
    """Guards zero_division=0: a label with no positives that the top-k never picks is a 0 in macro F1, precision
    and recall (scikit-learn's value), not a 1 that would lift a model for a label it never saw."""
    scores, targets = _data(labels=5, seed=3)
    targets[:, 4] = 0.0
    scores[:, 4] = -100.0  # never among the top k
    got = multilabel_metrics(torch.from_numpy(scores), torch.from_numpy(targets), _names(5), 2)
    pred = top_k_prediction(torch.from_numpy(scores), 2).numpy()
    y = targets.astype(int)
    assert pred[:, 4].sum() == 0
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0), abs=1e-6)
    assert got["macro_precision"] == pytest.approx(precision_score(y, pred, average="macro", zero_division=0),
                                                   abs=1e-6)
    assert got["macro_recall"] == pytest.approx(recall_score(y, pred, average="macro", zero_division=0), abs=1e-6)
    assert got["per_label_f1"][4] is None


def test_scalar_metrics_keeps_the_numbers_and_drops_top_k_lists_and_flags():
    """Guards what a logger receives: numbers with the prefix; not the top_k setting, lists or booleans."""
    metrics = {"micro_f1": 0.5, "num_samples": 7, "top_k": 3, "per_label_f1": [0.1, None], "flag": True,
               "labels_without_positives": ["x"]}
    assert scalar_metrics(metrics, "val/") == {"val/micro_f1": 0.5, "val/num_samples": 7.0}
