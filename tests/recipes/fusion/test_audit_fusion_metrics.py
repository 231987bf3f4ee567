"""The fusion metrics' per-class report and confusion matrix against scikit-learn, with a class absent from the
targets but predicted (its recall and support 0, its precision 0): every class of the manifest, in its order."""
from __future__ import annotations

import pytest
import torch
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from mmlnb_dist.recipes.fusion.metrics import compute_metrics

CLASSES = ["UD", "PD", "D"]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("seed", [0, 1])
def test_per_class_report_and_confusion_matrix_equal_sklearn(seed):
    """Guards `per_class` (precision, recall, F1, support per class, not swapped or shifted) and the matrix's
    orientation (rows = truth), on random predictions where class D is predicted but never true."""
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, 2, (37,), generator=g)
    probs = torch.softmax(torch.randn(37, 3, generator=g) + 0.8 * torch.nn.functional.one_hot(targets, 3), -1)
    got = compute_metrics(probs, targets, CLASSES)
    y, yp = targets.numpy(), probs.argmax(-1).numpy()
    assert (yp == 2).any()
    prec, rec, f1, support = precision_recall_fscore_support(y, yp, labels=[0, 1, 2], zero_division=0)
    assert list(got["per_class"]) == CLASSES
    for i, c in enumerate(CLASSES):
        row = got["per_class"][c]
        assert row["precision"] == pytest.approx(prec[i], abs=1e-6), c
        assert row["recall"] == pytest.approx(rec[i], abs=1e-6), c
        assert row["f1"] == pytest.approx(f1[i], abs=1e-6), c
        assert row["support"] == int(support[i]), c
    assert got["confusion_matrix"] == confusion_matrix(y, yp, labels=[0, 1, 2]).tolist()
    assert got["absent_classes"] == ["D"]


def test_probabilities_of_the_wrong_shape_are_a_user_error():
    """Guards the shape check: one row of n_classes probabilities per target, else a UserError naming the split."""
    from mmlnb_dist.core.errors import UserError

    with pytest.raises(UserError, match="split 'val'.*shape"):
        compute_metrics(torch.full((4, 2), 0.5), torch.tensor([0, 1, 0, 1]), CLASSES, split="val")
    with pytest.raises(UserError, match="split 'val'.*shape"):
        compute_metrics(torch.full((3, 3), 1 / 3), torch.tensor([0, 1, 0, 1]), CLASSES, split="val")
