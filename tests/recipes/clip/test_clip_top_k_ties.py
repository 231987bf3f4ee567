"""Tied scores (bf16 logits keep about 3 significant digits, so labels tie often; saturated zero-shot scores too):
the metrics' top-k prediction used `torch.topk`, whose choice among tied labels is unspecified, while `predict`
and the served model choose the lower label index first. The same scores gave another label set in `evaluate`
than in `predict` (on 12 labels with ties, most rows differed). Both now take the lower index first."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_the_metrics_top_k_chooses_tied_labels_as_predict_does(k):
    from mmlnb_dist.recipes.clip.metrics import top_k_prediction
    from mmlnb_dist.recipes.clip.pyfunc_model import select_labels

    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 3, (200, 12), generator=g).float()  # many ties in every row
    got = top_k_prediction(scores, k).numpy()
    want = np.zeros_like(got)
    for row, chosen in enumerate(select_labels(scores.numpy(), k)):
        want[row, chosen] = 1
    assert (got.sum(1) == k).all()
    assert np.array_equal(got, want), f"{int((got != want).any(1).sum())} of 200 rows differ"
