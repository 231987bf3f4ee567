"""Metrics of a split where a threshold-free score is undefined (defect hunt, clip4)."""
from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import f1_score, roc_auc_score

from mmlnb_dist.recipes.clip.metrics import multilabel_metrics


def test_micro_auroc_is_undefined_when_every_pair_is_positive():
    """A tiny split whose samples hold every label (2 labels, both on each sample): no negative (sample, label)
    pair, so micro AUROC is undefined (scikit-learn refuses it); it read 0.0, the worst possible ranking."""
    scores = torch.tensor([[2.0, -1.0], [0.5, 0.7], [-3.0, 1.0]])
    targets = torch.ones(3, 2)
    m = multilabel_metrics(scores, targets, ["a", "b"], 1)
    assert math.isnan(m["micro_auroc"]) and math.isnan(m["macro_auroc"])
    assert m["labels_without_negatives"] == ["a", "b"]
    pred = np.array([[1, 0], [0, 1], [0, 1]])
    assert m["micro_f1"] == np.float32(f1_score(np.ones((3, 2)), pred, average="micro"))


def test_micro_auroc_still_matches_scikit_learn_when_defined():
    scores = torch.tensor([[2.0, -1.0], [0.5, 0.7], [-3.0, 1.0]])
    targets = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    m = multilabel_metrics(scores, targets, ["a", "b"], 1)
    assert math.isclose(m["micro_auroc"], roc_auc_score(targets.numpy().ravel(), scores.numpy().ravel()))
