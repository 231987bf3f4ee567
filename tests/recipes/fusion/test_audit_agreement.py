"""`predict`'s agreement with the labels its inputs carry, against scikit-learn on random rows: accuracy and
balanced accuracy over the labelled rows of known classes (rows of a class the model does not predict left out and
named), the per-slide majority accuracy, and for label sets micro F1 and exact match."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from mmlnb_dist.predict.agreement import agreement, agreement_lines

CLASSES = ["UD", "PD", "D"]


def test_single_label_agreement_equals_sklearn_and_leaves_out_unknown_and_unlabelled_rows():
    """Guards the single-label branch: which rows count, and the values (balanced accuracy is not accuracy)."""
    rng = np.random.default_rng(0)
    truth = list(rng.choice(CLASSES, 40, p=[0.6, 0.3, 0.1]))
    pred = list(rng.choice(CLASSES, 40))
    rows = [{"label": p, "true_label": t} for t, p in zip(truth, pred)]
    rows += [{"label": "UD", "true_label": "GN"}, {"label": "PD", "true_label": ""}, {"label": "D"}]
    slides = [{"label_majority": "UD", "true_label": "UD"}, {"label_majority": "PD", "true_label": "D"},
              {"label_majority": "D", "true_label": "GN"}, {"label_majority": "D", "true_label": None}]
    got = agreement(rows, slides, CLASSES, multilabel=False)
    assert got["patches"]["n"] == 40 and got["unknown"] == ["GN"]
    assert got["patches"]["accuracy"] == pytest.approx(accuracy_score(truth, pred))
    assert got["patches"]["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, pred))
    assert got["slides"] == {"n": 2, "accuracy": pytest.approx(0.5)}
    lines = agreement_lines(got)
    assert any("balanced accuracy" in line for line in lines) and any("GN" in line for line in lines)


def test_rows_only_of_unknown_classes_report_them_and_no_labels_report_nothing():
    """Guards the empty cases: unknown classes only -> n 0 and the names; no labelled row -> None."""
    got = agreement([{"label": "UD", "true_label": "GN"}], None, CLASSES, multilabel=False)
    assert got["patches"] == {"n": 0} and got["unknown"] == ["GN"] and got["slides"] is None
    assert agreement([{"label": "UD"}], None, CLASSES, multilabel=False) is None


def test_label_set_agreement_equals_sklearn_micro_f1_and_exact_match():
    """Guards the multi-label branch: micro F1 and exact match over the labelled rows, unknown labels
    named and counted as misses."""
    rng = np.random.default_rng(1)
    names = ["a", "b", "c", "d"]
    truth = rng.random((30, 4)) < 0.4
    pred = rng.random((30, 4)) < 0.4
    truth[0] = pred[0]  # at least one exact match
    truth[1] = [True, False, False, False]

    def joined(row):
        return "|".join(n for n, on in zip(names, row) if on)

    rows = [{"labels": joined(p), "true_labels": joined(t)} for t, p in zip(truth, pred) if t.any()]
    kept = [(t, p) for t, p in zip(truth, pred) if t.any()]
    rows.append({"labels": "a", "true_labels": ""})  # no labels: left out
    rows[1] = {**rows[1], "true_labels": rows[1]["true_labels"] + "|zz"}  # a label the model does not know
    got = agreement(rows, None, names, multilabel=True)
    # scored on the full label sets: "zz", which the model cannot predict, is a miss of row 1 (a column of its own)
    y = np.array([list(t) + [i == 1] for i, (t, _) in enumerate(kept)], int)
    p = np.array([list(q) + [False] for _, q in kept], int)
    assert got["patches"]["n"] == len(kept) and got["unknown"] == ["zz"]
    assert got["patches"]["micro_f1"] == pytest.approx(f1_score(y, p, average="micro", zero_division=0))
    assert got["patches"]["exact_match"] == pytest.approx(accuracy_score(y, p))
