"""`mmlnb-dist evaluate --json` of a CLIP export on a split where an AUROC is undefined (a small test split: no
label with both positives and negatives): the printed JSON must be strict (null, as the run's metrics.json
writes it), not Python's bare `NaN` that jq, JavaScript and Spark refuse."""
from __future__ import annotations

import json

import torch


def _refuse(name):
    raise ValueError(f"non-standard JSON constant {name}")


def test_evaluate_json_of_an_undefined_auroc_is_strict_json(monkeypatch):
    from mmlnb_dist.recipes.clip import evaluate as clip_evaluate
    from mmlnb_dist.recipes.clip.metrics import multilabel_metrics

    classes = ["fat", "necrosis", "mitoses"]
    scores = torch.tensor([[2.0, -1.0, 0.5], [1.0, 0.0, -2.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # fat everywhere, the others nowhere
    metrics = multilabel_metrics(scores, targets, classes, 1, "test")
    assert metrics["macro_auroc"] != metrics["macro_auroc"]  # NaN: undefined on this split
    monkeypatch.setattr(clip_evaluate, "evaluate_export", lambda cfg, export, split: (metrics, classes))
    monkeypatch.setattr(clip_evaluate, "track_evaluation", lambda *args: None)
    out = clip_evaluate.evaluate_command(None, export="runs/x/export", checkpoint=None, tag=None, split="test",
                                         as_json=True)
    parsed = json.loads(out, parse_constant=_refuse)
    assert parsed["macro_auroc"] is None
    assert parsed["micro_f1"] == metrics["micro_f1"] and parsed["per_label_f1"] == [1.0, None, None]
