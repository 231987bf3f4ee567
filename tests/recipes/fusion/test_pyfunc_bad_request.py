"""A served fusion model (`mlflow models serve`) sent a request with an image it cannot read, or without the `image`
column: `read_request` raised a ValueError, which MLflow's scoring server answers with "Encountered an unexpected
error while evaluating the model" (the reason only inside a stack trace). Now it is a bad request (HTTP 400) whose
message is the reason, naming the row and its key; nothing is run through the network."""
from __future__ import annotations

import base64
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from mmlnb_dist.recipes.fusion.pyfunc_model import MMLNBClassifier

from support.served import random_pngs


class Stub:
    def __init__(self):
        self.classes, self.batches = ["UD", "PD", "D"], []
        self.transform = SimpleNamespace(image_size=16)
        self.model = SimpleNamespace(text_encoder=None)

    def predict(self, images, texts):
        self.batches.append(len(images))
        return {"probs": np.full((len(images), 3), 1 / 3), "alpha": None}


def _served():
    served = MMLNBClassifier()
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
