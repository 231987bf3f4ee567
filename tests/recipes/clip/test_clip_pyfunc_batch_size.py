"""The served CLIP model's `batch_size` param (`params={'batch_size': B}`): 0 or a negative size is a bad request
(MlflowException, HTTP 400) naming the param, not a ValueError from `range()` (0) or a frame of mismatched
column lengths (negative: no batch was run at all)."""
from __future__ import annotations

import base64
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from support.served import random_pngs


class _Stub:
    classes, top_k = ["fat", "necrosis", "mitoses"], 2
    transform = SimpleNamespace(image_size=16)
    model = SimpleNamespace(uses_text=True)

    def probabilities(self, images, texts):
        return np.full((len(images), 3), 0.5)


@pytest.mark.parametrize("batch_size", [0, -1, "0"])
def test_a_batch_size_below_one_is_a_bad_request_naming_the_param(batch_size):
    from mlflow.exceptions import MlflowException

    from mmlnb_dist.recipes.clip.pyfunc_model import ClipClassifier

    served = ClipClassifier()
    served.predictor = _Stub()
    frame = pd.DataFrame({"image": [base64.b64encode(b).decode() for b in random_pngs(2, 16)],
                          "description": ["a", "b"]})
    with pytest.raises(MlflowException, match=rf"params batch_size={batch_size}: give a batch size >= 1"):
        served.predict(None, frame, params={"batch_size": batch_size})
    assert len(served.predict(None, frame, params={"batch_size": 1})) == 2
