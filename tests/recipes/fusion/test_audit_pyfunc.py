"""Audit of the served fusion model (`MMLNBClassifier.predict`, what `mlflow.pyfunc.load_model(...).predict(df)`
runs) with a stub predictor of known probabilities: `params={'batch_size': B}` runs the network B rows at a time
(32 by default), a request without `key` / `slide_id` gets None in those columns (not the text "None"), an
image-only model predicts rows without a description, and a text-reading one refuses them as a bad request (HTTP
400), naming the row's key."""
from __future__ import annotations

import base64
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from support.served import random_pngs

CLASSES = ["UD", "PD", "D"]


class Stub:
    """The predictor's shape: fixed probabilities per row (from a seeded generator), the batch sizes it was run on."""

    def __init__(self, reads_text: bool):
        self.classes = list(CLASSES)
        self.transform = SimpleNamespace(image_size=16)
        self.model = SimpleNamespace(text_encoder=object() if reads_text else None)
        self.batches, self.texts = [], []
        self.probs = np.random.default_rng(0).dirichlet(np.ones(3), 50)

    def predict(self, images, texts):
        start = sum(self.batches)
        self.batches.append(len(images))
        self.texts.extend(texts)
        return {"probs": self.probs[start:start + len(images)], "alpha": None}


def _served(reads_text=True):
    from mmlnb_dist.recipes.fusion.pyfunc_model import MMLNBClassifier

    served = MMLNBClassifier()
    served.predictor = Stub(reads_text)
    return served


def _images(n):
    return [base64.b64encode(b).decode() for b in random_pngs(n, 16)]


@pytest.mark.parametrize("params, batches", [(None, [5]), ({"batch_size": 2}, [2, 2, 1]), ({"batch_size": 5}, [5])])
def test_batch_size_param_sets_the_rows_run_at_a_time_and_the_output_is_the_same(params, batches):
    served = _served()
    out = served.predict(None, pd.DataFrame({"image": _images(5), "description": list("abcde")}), params=params)
    assert served.predictor.batches == batches
    np.testing.assert_allclose(out[[f"prob_{c}" for c in CLASSES]].to_numpy(), served.predictor.probs[:5])
    assert list(out["label"]) == [CLASSES[i] for i in served.predictor.probs[:5].argmax(1)]


def test_keys_and_slides_are_carried_through_and_none_when_not_given():
    served = _served()
    out = served.predict(None, pd.DataFrame({"image": _images(2), "description": ["x", "y"]}))
    assert list(out["key"]) == [None, None] and list(out["slide_id"]) == [None, None]
    out = served.predict(None, pd.DataFrame({"image": _images(2), "description": ["x", "y"], "key": ["k1", 7],
                                             "slide_id": ["s1", None]}))
    assert list(out["key"]) == ["k1", "7"] and out["slide_id"][0] == "s1" and pd.isna(out["slide_id"][1])
    assert list(out["description"]) == ["x", "y"]


def test_an_image_only_model_predicts_rows_without_a_description_and_a_text_reading_one_refuses_them():
    from mlflow.exceptions import MlflowException

    image_only = _served(reads_text=False)
    out = image_only.predict(None, pd.DataFrame({"image": _images(2)}))
    assert len(out) == 2 and image_only.predictor.texts == ["", ""] and list(out["description"]) == ["", ""]
    reader = _served(reads_text=True)
    with pytest.raises(MlflowException, match="1 of 2 rows have none.*key k2") as err:
        reader.predict(None, pd.DataFrame({"image": _images(2), "description": ["x", " "], "key": ["k1", "k2"]}))
    assert err.value.get_http_status_code() == 400 and reader.predictor.batches == []
