"""A multi-label row whose true set holds a label the model does not predict: that label was dropped before
scoring, so the row could count as an exact match and micro F1 was inflated. It is a miss (a false negative), as
scikit-learn scores the full label sets."""
from __future__ import annotations

import pytest
from sklearn.metrics import accuracy_score, f1_score
from sklearn.preprocessing import MultiLabelBinarizer

from mmlnb_dist.predict.agreement import agreement, agreement_lines


def test_a_true_label_the_model_does_not_predict_is_a_miss():
    classes = ["UD", "PD", "D"]
    rows = [{"labels": "UD", "true_labels": "UD|NEW"}, {"labels": "PD", "true_labels": "PD"},
            {"labels": "D|UD", "true_labels": "D"}]
    truth = [set(r["true_labels"].split("|")) for r in rows]
    pred = [set(r["labels"].split("|")) for r in rows]
    hot = MultiLabelBinarizer(classes=classes + ["NEW"]).fit(truth + pred)
    got = agreement(rows, None, classes, multilabel=True)
    assert got["patches"]["exact_match"] == pytest.approx(accuracy_score(hot.transform(truth), hot.transform(pred)))
    assert got["patches"]["micro_f1"] == pytest.approx(
        f1_score(hot.transform(truth), hot.transform(pred), average="micro"))
    assert got["unknown"] == ["NEW"]
    assert any("NEW" in line and "miss" in line for line in agreement_lines(got)), agreement_lines(got)
