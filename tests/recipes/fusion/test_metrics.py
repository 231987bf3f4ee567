"""Every metric equals scikit-learn's, on one rank and gathered from 2 gloo ranks with uneven sizes."""
from __future__ import annotations

import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from sklearn import metrics as skm

from mmlnb_dist.recipes.fusion.metrics import compute_metrics, format_metrics_table, ordinal_permutation

from support.metrics import CLASSES, gather_worker
from support.metrics import random_predictions as _random_predictions


def sklearn_metrics(probs: torch.Tensor, targets: torch.Tensor, classes=CLASSES) -> dict:
    y, p = targets.numpy(), probs.numpy()
    yp = p.argmax(1)
    rank = np.array(ordinal_permutation(classes))
    return {
        "accuracy": skm.accuracy_score(y, yp),
        "balanced_accuracy": skm.balanced_accuracy_score(y, yp),
        "kappa": skm.cohen_kappa_score(y, yp),
        "quadratic_kappa": skm.cohen_kappa_score(rank[y], rank[yp], weights="quadratic"),
        "f1_weighted": skm.f1_score(y, yp, average="weighted", zero_division=0),
        "precision_weighted": skm.precision_score(y, yp, average="weighted", zero_division=0),
        "recall_weighted": skm.recall_score(y, yp, average="weighted", zero_division=0),
        "auroc": skm.roc_auc_score(y, p, multi_class="ovr", average="macro"),
        "confusion_matrix": skm.confusion_matrix(y, yp, labels=range(len(classes))).tolist(),
    }


def assert_matches_sklearn(ours: dict, probs, targets, classes=CLASSES):
    ref = sklearn_metrics(probs, targets, classes)
    for key, value in ref.items():
        if key == "confusion_matrix":
            assert ours[key] == value
        else:
            assert ours[key] == pytest.approx(value, abs=1e-5), key


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_rank_matches_sklearn(seed):
    probs, targets = _random_predictions(101 + seed, seed)
    ours = compute_metrics(probs, targets, CLASSES)
    assert_matches_sklearn(ours, probs, targets)
    assert ours["num_samples"] == len(targets)
    assert "rows = truth" in format_metrics_table(ours, CLASSES)


def test_quadratic_kappa_uses_the_ordinal_order_not_the_label_order():
    # The same predictions with classes listed in the authors' order (PD, D, UD) give the same ordinal kappa.
    probs, targets = _random_predictions(90, 5)
    ours = compute_metrics(probs, targets, CLASSES)
    perm = torch.tensor([2, 0, 1])  # old index -> new: UD->2, PD->0, D->1
    shuffled = compute_metrics(probs[:, [1, 2, 0]], perm[targets], ["PD", "D", "UD"])
    assert shuffled["quadratic_kappa"] == pytest.approx(ours["quadratic_kappa"], abs=1e-6)
    assert shuffled["kappa"] == pytest.approx(ours["kappa"], abs=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_gathered_from_two_uneven_ranks_matches_sklearn(tmp_path):
    mp.spawn(gather_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    probs, targets = _random_predictions(77, 11)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)  # our own test output
        assert got["n"] == 77
        assert_matches_sklearn(got["metrics"], probs, targets)
