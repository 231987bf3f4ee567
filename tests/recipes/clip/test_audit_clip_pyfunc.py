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
    def __init__(self, uses_text=True, top_k=2, zero_shot=False):
        self.classes, self.top_k, self.zero_shot = list(LABELS), top_k, zero_shot
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


def test_a_zero_shot_model_refuses_a_threshold_and_predicts_its_top_k():
    """Zero-shot scores are logit_scale x cosine similarity (CLIP's scale is 100: logits of 15-35), not calibrated
    probabilities: their sigmoids are all about 1, so `threshold=0.5` predicted every label of every image. A
    threshold is refused as a bad request naming the top-k alternative; the top k still works."""
    from mlflow.exceptions import MlflowException

    served = _served(uses_text=False, zero_shot=True)
    with pytest.raises(MlflowException, match="zero-shot") as err:
        served.predict(None, _frame(), params={"threshold": 0.5})
    assert err.value.get_http_status_code() == 400 and "top_k" in str(err.value)
    assert served.predictor.batches == []
    out = served.predict(None, _frame(), params={"top_k": 1})
    assert list(out["labels"]) == ["fat", "necrosis", "tissue"]


def test_the_predictor_of_a_zero_shot_export_knows_it_is_one(tmp_path):
    """`ClipPredictor.zero_shot` comes from the export's own description (what the refusal above reads)."""
    import torch

    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.clip.export import export_model
    from mmlnb_dist.recipes.clip.model import build_model
    from mmlnb_dist.recipes.clip.pyfunc_model import ClipPredictor
    from support.clip import CLIP_PROFILE

    for fusion in ("zero_shot", "concat"):
        cfg = load_config(CLIP_PROFILE, [f"clip.model.fusion={fusion}", "clip.model.towers.tiny.layers=1",
                                         "clip.model.towers.unfreeze_blocks=1"]).clip.model
        torch.manual_seed(0)
        model = build_model(cfg, len(LABELS), 32, classes=LABELS).eval()
        export_model(dict(model.state_dict()), model, cfg, LABELS, tmp_path / fusion, image_size=32, top_k=2,
                     extra={})
        assert ClipPredictor(tmp_path / fusion, device="cpu").zero_shot is (fusion == "zero_shot")
