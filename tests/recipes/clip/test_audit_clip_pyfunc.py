"""Audit of the served CLIP model (`ClipClassifier.predict`) with a stub predictor of known probabilities: a
threshold of exactly 1 is accepted (as `predict --threshold 1`), `top_k` 0 means the model's own k,
`params={'batch_size': B}` runs B rows at a time, and a caption-reading model refuses rows without a caption as a
bad request (HTTP 400) while an image-only one predicts them."""
from __future__ import annotations

import base64
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from support.served import random_pngs

LABELS = ["fat", "necrosis", "mitoses", "tissue"]
PROBS = np.array([[1.0, 0.2, 0.9, 0.4], [0.3, 1.0, 1.0, 0.1], [0.5, 0.6, 0.7, 0.8]])


class Stub:
    def __init__(self, uses_text=True, top_k=2):
        self.classes, self.top_k = list(LABELS), top_k
        self.transform = SimpleNamespace(image_size=16)
        self.model = SimpleNamespace(uses_text=uses_text)
        self.batches = []

    def probabilities(self, images, texts):
        start = sum(self.batches)
        self.batches.append(len(images))
        return PROBS[start:start + len(images)]


def _served(**kwargs):
    from mmlnb_dist.recipes.clip.pyfunc_model import ClipClassifier

    served = ClipClassifier()
    served.predictor = Stub(**kwargs)
    return served


def _frame(texts=("a", "b", "c")):
    return pd.DataFrame({"image": [base64.b64encode(b).decode() for b in random_pngs(len(texts), 16)],
                         "description": list(texts)})


def test_a_threshold_of_one_is_accepted_and_chooses_the_labels_at_probability_one():
    out = _served().predict(None, _frame(), params={"threshold": 1.0})
    assert list(out["labels"]) == ["fat", "necrosis|mitoses", ""] and set(out["selection"]) == {"p>=1"}


def test_top_k_zero_is_the_models_own_k_and_batch_size_sets_the_rows_run_at_a_time():
    served = _served(top_k=3)
    out = served.predict(None, _frame(), params={"top_k": 0, "batch_size": 2})
    assert served.predictor.batches == [2, 1] and set(out["selection"]) == {"top-3"}
    assert list(out["labels"]) == ["fat|mitoses|tissue", "necrosis|mitoses|fat", "tissue|mitoses|necrosis"]
    np.testing.assert_allclose(out[[f"prob_{c}" for c in LABELS]].to_numpy(), PROBS)
    served = _served(top_k=3)
    served.predict(None, _frame(), params=None)
    assert served.predictor.batches == [3]


def test_a_caption_reading_model_refuses_rows_without_one_and_an_image_only_model_predicts_them():
    from mlflow.exceptions import MlflowException

    reader = _served(uses_text=True)
    with pytest.raises(MlflowException, match="1 of 3 rows have none") as err:
        reader.predict(None, _frame(("a", "", "c")))
    assert err.value.get_http_status_code() == 400 and reader.predictor.batches == []
    image_only = _served(uses_text=False)
    out = image_only.predict(None, _frame(("a", "", "c")))
    assert list(out["description"]) == ["a", "", "c"] and len(out) == 3
    assert list(out["key"]) == [None] * 3 and list(out["slide_id"]) == [None] * 3  # not the text "None"
