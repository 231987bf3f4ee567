"""The evaluate table says how labels with no positive sample in the split are counted: their per-label F1 is
shown `n/a` (there is nothing to find), and the footer says they count 0 in macro F1 / precision / recall (as
scikit-learn's `zero_division=0` counts them) besides being left out of macro AUROC. The table used to print their
F1 as 0.0000 and say only that they were left out of macro AUROC, while macro F1 averaged their zeros in."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from mmlnb_dist.recipes.clip.evaluate import format_metrics_table
from mmlnb_dist.recipes.clip.metrics import multilabel_metrics, top_k_prediction

CLASSES = ["fat", "mitoses", "necrosis", "rare"]


def test_labels_without_positives_show_na_and_the_footer_says_they_count_zero_in_macro_f1():
    rng = np.random.default_rng(0)
    targets = (rng.random((30, 4)) < 0.5).astype(np.float32)
    targets[:, 3] = 0  # `rare`: no positive in this split
    targets[targets.sum(1) == 0, 0] = 1
    scores = torch.tensor(rng.normal(size=(30, 4)), dtype=torch.float32)
    metrics = multilabel_metrics(scores, torch.tensor(targets), CLASSES, 2, "val")

    pred = top_k_prediction(scores, 2).numpy()
    assert metrics["macro_f1"] == np.float32(f1_score(targets, pred, average="macro", zero_division=0))
    assert metrics["labels_without_positives"] == ["rare"]

    table = format_metrics_table(metrics, CLASSES, "val split (export)")
    rows = {line.split()[0]: line.split()[1] for line in table.splitlines()
            if line.startswith("    ") and line.split()[0] in CLASSES}
    assert rows["rare"] == "n/a", table
    assert all(rows[c] != "n/a" for c in CLASSES[:3]), table
    footer = next(line for line in table.splitlines() if "without positives" in line)
    assert "rare" in footer and "they count 0 in macro F1, precision and recall" in footer, footer
    assert "left out of macro AUROC" in footer, footer


def test_the_table_shows_every_j_of_top_k_accuracy_when_k_is_above_three():
    """`clip.top_k=5`: metrics.json, `--json` and MLflow hold `at_least_4_of_top_k` and `at_least_5_of_top_k`; the
    printed table stopped at j = 3 (the table's names were fixed up to the seed's k), dropping two of them."""
    rng = np.random.default_rng(1)
    classes = [f"l{i}" for i in range(7)]
    targets = (rng.random((40, 7)) < 0.6).astype(np.float32)
    scores = torch.tensor(rng.normal(size=(40, 7)), dtype=torch.float32)
    metrics = multilabel_metrics(scores, torch.tensor(targets), classes, 5, "test")
    table = format_metrics_table(metrics, classes, "test split (export)")
    shown = {line.split()[0]: float(line.split()[1]) for line in table.splitlines()
             if line.startswith("  ") and not line.startswith("    ") and len(line.split()) == 2}
    for j in range(1, 6):
        name = f"at_least_{j}_of_top_k"
        assert shown.get(name) == pytest.approx(metrics[name], abs=1e-4), table
