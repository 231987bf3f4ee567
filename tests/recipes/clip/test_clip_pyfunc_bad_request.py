"""The served CLIP model (`mlflow models serve`) sent an image it cannot read, or no `image` column: a ValueError,
which MLflow's scoring server answers with "Encountered an unexpected error while evaluating the model" (the reason
only in a stack trace). As for the fusion model, it is now a bad request (HTTP 400) naming the row, its key and the
reason, before anything runs through the network."""
from __future__ import annotations

import base64
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from mmlnb_dist.recipes.clip.pyfunc_model import ClipClassifier

from support.served import random_pngs


class Stub:
    def __init__(self):
        self.classes, self.top_k, self.batches = ["fat", "necrosis"], 1, []
        self.transform = SimpleNamespace(image_size=16)
        self.model = SimpleNamespace(uses_text=False)

    def probabilities(self, images, texts):
        self.batches.append(len(images))
        return np.full((len(images), 2), 0.5)


def _served():
    served = ClipClassifier()
    served.predictor = Stub()
    return served


def test_an_unreadable_image_is_a_bad_request_naming_its_row_and_key():
    served = _served()
    good = base64.b64encode(random_pngs(1, 16)[0]).decode()
    broken = base64.b64encode(b"not an image").decode()
    with pytest.raises(MlflowException) as err:
        served.predict(None, pd.DataFrame({"image": [good, broken], "key": ["k1", "k2"]}))
    text = err.value.message
    assert err.value.get_http_status_code() == 400 and served.predictor.batches == []
    assert "row 1" in text and "key k2" in text and "not a readable image" in text, text


def test_a_request_without_an_image_column_is_a_bad_request_saying_so():
    served = _served()
    with pytest.raises(MlflowException) as err:
        served.predict(None, pd.DataFrame({"description": ["x"]}))
    assert err.value.get_http_status_code() == 400 and "'image' column" in err.value.message, err.value.message
