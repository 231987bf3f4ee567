"""Every metric equals scikit-learn's, on one rank and gathered from 2 gloo ranks with uneven sizes."""
from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from sklearn import metrics as skm

from mmlnb_dist.core.tracking.server import free_port
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


@pytest.mark.slow
def test_gathered_from_two_uneven_ranks_matches_sklearn(tmp_path):
    mp.spawn(gather_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    probs, targets = _random_predictions(77, 11)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)  # our own test output
        assert got["n"] == 77
        assert_matches_sklearn(got["metrics"], probs, targets)


# -- small splits: absent classes, one class, bad probabilities, empty (issue 11 item 8) ------------------------
def sklearn_small_split(probs: torch.Tensor, targets: torch.Tensor, classes=CLASSES) -> dict:
    """scikit-learn's values when some classes may be missing from the targets: every label listed explicitly,
    AUROC = macro mean of the one-vs-rest AUCs of the classes PRESENT in the targets (sklearn's multiclass call
    refuses a split with an absent class; an absent class has no positive, so its AUC is undefined)."""
    y, p = targets.numpy(), probs.numpy()
    yp = p.argmax(1)
    labels = list(range(len(classes)))
    rank = np.array(ordinal_permutation(classes))
    present = sorted(set(y.tolist()))
    aucs = [skm.roc_auc_score(y == c, p[:, c]) for c in present] if len(present) > 1 else []
    return {
        "accuracy": skm.accuracy_score(y, yp),
        "balanced_accuracy": skm.balanced_accuracy_score(y, yp),
        "kappa": skm.cohen_kappa_score(y, yp, labels=labels),
        "quadratic_kappa": skm.cohen_kappa_score(rank[y], rank[yp], labels=labels, weights="quadratic"),
        "f1_weighted": skm.f1_score(y, yp, labels=labels, average="weighted", zero_division=0),
        "precision_weighted": skm.precision_score(y, yp, labels=labels, average="weighted", zero_division=0),
        "recall_weighted": skm.recall_score(y, yp, labels=labels, average="weighted", zero_division=0),
        "auroc": float(np.mean(aucs)) if aucs else float("nan"),
    }


# D is absent from the targets but predicted twice (rows 1 and 3, 5): the case of issue 11 item 8.
ABSENT_D_TARGETS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 0, 1, 0])
ABSENT_D_PROBS = torch.tensor([[.7, .2, .1], [.2, .3, .5], [.5, .4, .1], [.1, .3, .6], [.3, .6, .1],
                               [.2, .2, .6], [.6, .3, .1], [.4, .4, .2], [.1, .8, .1], [.3, .5, .2]])


def _assert_small_split_matches(ours, probs, targets, classes=CLASSES):
    ref = sklearn_small_split(probs, targets, classes)
    for key, value in ref.items():
        if np.isnan(value):
            assert np.isnan(ours[key]), f"{key}: {ours[key]} where sklearn's is undefined"
        else:
            assert ours[key] == pytest.approx(value, abs=1e-5), key


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_absent_but_predicted_class_matches_sklearn():
    ours = compute_metrics(ABSENT_D_PROBS, ABSENT_D_TARGETS, CLASSES)
    _assert_small_split_matches(ours, ABSENT_D_PROBS, ABSENT_D_TARGETS)
    assert ours["balanced_accuracy"] == pytest.approx(0.5)  # mean recall of UD (3/6) and PD (2/4)
    assert ours["absent_classes"] == ["D"]
    table = format_metrics_table(ours, CLASSES)
    assert "absent" in table and "D" in table.split("absent", 1)[1].splitlines()[0]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("seed", range(6))
def test_random_small_splits_with_missing_classes_match_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    n = 7 + seed
    kept = [0, 2] if seed % 2 else [1, 2]
    targets = torch.tensor(kept)[torch.randint(0, 2, (n,), generator=g)]
    targets[:2] = torch.tensor(kept)  # both kept classes present
    probs = torch.softmax(torch.randn(n, 3, generator=g), -1)
    ours = compute_metrics(probs, targets, CLASSES)
    _assert_small_split_matches(ours, probs, targets)
    assert ours["absent_classes"] == [c for i, c in enumerate(CLASSES) if i not in kept]


def test_all_classes_present_lists_none_absent():
    probs, targets = _random_predictions(30, 3)
    assert compute_metrics(probs, targets, CLASSES)["absent_classes"] == []


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_one_class_split_has_undefined_auroc_not_zero():
    targets = torch.zeros(10, dtype=torch.long)
    ours = compute_metrics(ABSENT_D_PROBS, targets, CLASSES)
    assert np.isnan(ours["auroc"])
    _assert_small_split_matches(ours, ABSENT_D_PROBS, targets)
    assert ours["absent_classes"] == ["PD", "D"]
    table = format_metrics_table(ours, CLASSES)
    assert "AUROC undefined" in table


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_probabilities_are_a_user_error_naming_the_split(bad):
    from mmlnb_dist.core.errors import UserError

    probs = ABSENT_D_PROBS.clone()
    probs[3, 1] = bad
    with pytest.raises(UserError, match="val.*non-finite|non-finite.*val"):
        compute_metrics(probs, ABSENT_D_TARGETS, CLASSES, split="val")


def test_empty_split_is_a_user_error():
    from mmlnb_dist.core.errors import UserError

    with pytest.raises(UserError, match="test.*no samples|no samples.*test"):
        compute_metrics(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), CLASSES, split="test")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_one_class_split_predicted_perfectly_has_undefined_kappa_like_sklearn():
    probs = torch.tensor([[.8, .1, .1]] * 5)
    targets = torch.zeros(5, dtype=torch.long)
    ours = compute_metrics(probs, targets, CLASSES)
    _assert_small_split_matches(ours, probs, targets)  # kappa, quadratic kappa and AUROC NaN; the rest 1.0
    assert np.isnan(ours["kappa"]) and ours["balanced_accuracy"] == 1.0
