"""A multi-label model (clip) predicting a single-label shard set: each sample carries one `label` and no label
set. `predict` dropped that label from the rows (only a single-label model's rows got `true_label`) and the
agreement only looked at `true_labels`, so the run printed no agreement at all. Now the row keeps `true_label` and
the label set predicted is compared with {true_label}: micro F1 and exact match, as for label sets."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run
from mmlnb_dist.predict.agreement import agreement, agreement_lines

from support.predict_stand_in import Meta
from support.shards import CLASSES, make_shard_set


class AlwaysUD:
    """A multi-label model over the shard set's classes that predicts the set {UD} for every image."""

    def __init__(self):
        self.metadata = Meta({"task": "multilabel", "classes": list(CLASSES), "top_k": 1})

    def predict(self, frame, params=None):
        n = len(frame)
        probs = {f"prob_{c}": np.full(n, 0.9 if c == "UD" else 0.1) for c in CLASSES}
        return pd.DataFrame({"key": frame["key"], "slide_id": frame["slide_id"], **probs, "labels": ["UD"] * n})


def test_single_labels_are_compared_as_one_label_sets():
    rows = [{"labels": "UD", "true_label": "UD"}, {"labels": "UD|PD", "true_label": "PD"},
            {"labels": "D", "true_label": "UD"}, {"labels": "D"}]
    got = agreement(rows, None, list(CLASSES), multilabel=True)
    assert got["patches"]["n"] == 3
    assert got["patches"]["exact_match"] == pytest.approx(1 / 3)
    assert got["patches"]["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))  # tp 2, fp 2, fn 1
    assert any("micro F1" in line for line in agreement_lines(got))


def test_predict_reports_agreement_of_a_multilabel_model_on_single_label_shards(tmp_path, monkeypatch):
    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=3, val_fraction=0.0, size=16)
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: AlwaysUD())
    out = tmp_path / "p.csv"
    report = predict_to_file("models:/stand-in@champion", [shards], out)
    rows = pd.read_csv(out, keep_default_na=False)
    assert set(rows["true_label"]) == set(CLASSES), rows.columns
    got = report["agreement"]
    assert got is not None and got["patches"]["n"] == len(rows)
    assert got["patches"]["exact_match"] == pytest.approx((rows["true_label"] == "UD").mean())
