"""CLIP-scale logits (zero-shot: logit_scale.exp() = 100 for a pretrained CLIP, cosines of 0.15-0.35, so logits of
15-35): a float32 sigmoid rounds them all to 1.0. The AUROCs must still rank the scores as scikit-learn does, and
the served model's predicted labels must still be the highest-scoring ones (not the first labels by index, ties
of 1.0 broken by position)."""
from __future__ import annotations


import numpy as np
import torch
from torch import nn

CLASSES = ["fat", "necrosis", "mitoses", "calcification", "stroma"]


def _clip_scale_logits(n: int = 64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    scores = 100 * (0.15 + 0.2 * torch.rand(n, len(CLASSES), generator=g))
    targets = (torch.rand(n, len(CLASSES), generator=g) < 0.4).float()
    return scores, targets


def test_auroc_of_clip_scale_logits_equals_sklearn():
    from sklearn.metrics import roc_auc_score

    from mmlnb_dist.recipes.clip.metrics import multilabel_metrics

    scores, targets = _clip_scale_logits()
    m = multilabel_metrics(scores, targets, CLASSES, 2)
    s, t = scores.double().numpy(), targets.numpy()
    assert np.isclose(m["micro_auroc"], roc_auc_score(t.ravel(), s.ravel()), atol=1e-6)
    assert np.isclose(m["macro_auroc"], roc_auc_score(t, s, average="macro"), atol=1e-6)


def test_auroc_keeps_tied_scores_tied_and_probabilities_work_as_before():
    from sklearn.metrics import roc_auc_score

    from mmlnb_dist.recipes.clip.metrics import multilabel_metrics

    scores, targets = _clip_scale_logits(seed=1)
    probs = (scores / 10).round().sigmoid()  # probabilities, with many ties
    m = multilabel_metrics(probs, targets, CLASSES, 2)
    p, t = probs.numpy(), targets.numpy()
    assert np.isclose(m["micro_auroc"], roc_auc_score(t.ravel(), p.ravel()), atol=1e-6)
    assert np.isclose(m["macro_auroc"], roc_auc_score(t, p, average="macro"), atol=1e-6)


class _FixedLogits(nn.Module):
    """A model whose logits for the batch are given (the predictor's forward path otherwise unchanged)."""

    uses_text = False

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits
        self.weight = nn.Parameter(torch.zeros(1))

    def inputs(self, pixel_values, texts, device=None):
        return {"pixel_values": pixel_values}

    def forward(self, pixel_values):
        return self.logits[: len(pixel_values)]


def test_served_labels_of_clip_scale_logits_are_the_highest_scoring():
    from mmlnb_dist.recipes.clip.metrics import top_k_prediction
    from mmlnb_dist.recipes.clip.pyfunc_model import ClipPredictor, predictions_frame

    scores, _ = _clip_scale_logits(n=8)
    predictor = ClipPredictor.__new__(ClipPredictor)
    predictor.model, predictor.device = _FixedLogits(scores), torch.device("cpu")
    predictor.classes, predictor.top_k = list(CLASSES), 2
    predictor.transform = type("T", (), {"image_size": 8, "__call__": lambda self, img: torch.zeros(3, 8, 8)})()
    out = predictions_frame(predictor, [None] * 8, [""] * 8, list(range(8)), [None] * 8, batch_size=8)
    expected = top_k_prediction(scores, 2).numpy()
    for row, labels in enumerate(out["labels"]):
        chosen = {CLASSES.index(x) for x in labels.split("|")}
        assert chosen == set(np.flatnonzero(expected[row])), (row, labels, scores[row])
    ranked = out[[f"prob_{c}" for c in CLASSES]].to_numpy()
    assert (np.argsort(-ranked, axis=1, kind="stable") == np.argsort(-scores.double().numpy(), axis=1)).all()
