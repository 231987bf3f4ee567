"""The served model's `batch_size` param below 1 is a bad request (HTTP 400) naming the param: 0 was a `range()`
traceback (HTTP 500), and a negative one ran no batch and failed building the output frame ("All arrays must be of
the same length"), neither saying what was wrong with the request."""
from __future__ import annotations

import base64
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from support.served import random_pngs


class Stub:
    classes = ["UD", "PD", "D"]
    transform = SimpleNamespace(image_size=16)
    model = SimpleNamespace(text_encoder=None)

    def predict(self, images, texts):
        return {"probs": np.full((len(images), 3), 1 / 3), "alpha": None}


@pytest.mark.parametrize("batch_size", [0, -4])
def test_a_batch_size_below_one_is_a_bad_request_naming_it(batch_size):
    from mlflow.exceptions import MlflowException

    from mmlnb_dist.recipes.fusion.pyfunc_model import MMLNBClassifier

    served = MMLNBClassifier()
    served.predictor = Stub()
    frame = pd.DataFrame({"image": [base64.b64encode(b).decode() for b in random_pngs(3, 16)]})
    with pytest.raises(MlflowException, match=f"batch_size.*{batch_size}") as err:
        served.predict(None, frame, params={"batch_size": batch_size})
    assert err.value.get_http_status_code() == 400
    assert len(served.predict(None, frame, params={"batch_size": 1})) == 3
