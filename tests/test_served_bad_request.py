"""A served model (`mlflow models serve`, fusion or CLIP) sent an image it cannot read, or no `image` column:
`read_request` raised a ValueError, which MLflow's scoring server answers with "Encountered an unexpected error
while evaluating the model" (the reason only inside a stack trace). Now it is a bad request (HTTP 400) whose message
is the reason, naming the row and its key; nothing is run through the network."""
from __future__ import annotations

import base64
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from mmlnb_dist.recipes.clip.pyfunc_model import ClipClassifier
from mmlnb_dist.recipes.fusion.pyfunc_model import MMLNBClassifier

from support.served import random_pngs


class Predictor:
    """Stands in for either recipe's predictor: records the batches it is asked to score."""

    def __init__(self):
        self.classes, self.top_k, self.batches = ["UD", "PD", "D"], 1, []
        self.transform = SimpleNamespace(image_size=16)
        self.model = SimpleNamespace(text_encoder=None, uses_text=False)

    def predict(self, images, texts):  # the fusion model's
        self.batches.append(len(images))
        return {"probs": np.full((len(images), 3), 1 / 3), "alpha": None}

    def probabilities(self, images, texts):  # the CLIP model's
        self.batches.append(len(images))
        return np.full((len(images), 3), 0.5)


@pytest.fixture(params=[MMLNBClassifier, ClipClassifier], ids=["fusion", "clip"])
def served(request):
    model = request.param()
    model.predictor = Predictor()
    return model


def test_an_unreadable_image_is_a_bad_request_naming_its_row_and_key(served):
    good = base64.b64encode(random_pngs(1, 16)[0]).decode()
    broken = base64.b64encode(b"not an image").decode()
    with pytest.raises(MlflowException) as err:
        served.predict(None, pd.DataFrame({"image": [good, broken], "key": ["k1", "k2"]}))
    text = err.value.message
    assert err.value.get_http_status_code() == 400 and served.predictor.batches == []
    assert "row 1" in text and "key k2" in text and "not a readable image" in text, text


def test_a_request_without_an_image_column_is_a_bad_request_saying_so(served):
    with pytest.raises(MlflowException) as err:
        served.predict(None, pd.DataFrame({"description": ["x"]}))
    assert err.value.get_http_status_code() == 400 and "'image' column" in err.value.message, err.value.message
