"""`mmlnb-dist evaluate --json` of a CLIP export: `per_label_f1` is a bare list in the model's label order, which
may differ from the shard set's (evaluate scores by label name): the JSON must name its labels, in that order,
or a script reading it pairs each F1 with whatever label it assumes."""
from __future__ import annotations

import json

import pytest
import torch


def test_evaluate_json_names_the_labels_of_per_label_f1(monkeypatch):
    from mmlnb_dist.recipes.clip import evaluate as clip_evaluate
    from mmlnb_dist.recipes.clip.metrics import multilabel_metrics

    classes = ["necrosis", "fat", "mitoses"]  # the model's order, not the shards' (fat, mitoses, necrosis)
    scores = torch.tensor([[2.0, -1.0, 0.5], [1.0, 0.0, -2.0], [-1.0, 3.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    metrics = multilabel_metrics(scores, targets, classes, 1, "test")
    monkeypatch.setattr(clip_evaluate, "evaluate_export", lambda cfg, export, split: (metrics, classes))
    monkeypatch.setattr(clip_evaluate, "track_evaluation", lambda *args: None)
    parsed = json.loads(clip_evaluate.evaluate_command(None, export="runs/x/export", checkpoint=None, tag=None,
                                                       split="test", as_json=True))
    assert parsed["classes"] == classes
    by_label = dict(zip(parsed["classes"], parsed["per_label_f1"]))
    assert by_label == pytest.approx({"necrosis": 2 / 3, "fat": 1.0, "mitoses": 0.0})
