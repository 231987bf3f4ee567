"""The exported CLIP classifier, served through its MLflow pyfunc wrapper, gives the in-memory model's
probabilities (sigmoid of its logits) with `prob_<label>` in the export's label order; the predicted label set is
the top k (the model's own k unless `top_k` is given; a k above the number of labels is refused) or every label at
or above a threshold; the signature requires only `image`. An untrained tiny model is exported (no training run)."""
from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest
import torch

from support.clip import VOCAB, clip_config
from support.served import normalised_pixels, random_pngs

SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from mmlnb_dist.recipes.clip.export import export_model
    from mmlnb_dist.recipes.clip.model import build_model

    root = tmp_path_factory.mktemp("clip-export")
    cfg = clip_config(root / "no-shards", root / "runs")
    torch.manual_seed(0)
    model = build_model(cfg.clip.model, len(VOCAB), SIZE, classes=VOCAB).eval()
    with torch.no_grad():  # spread the probabilities: a column or order swap shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    export_dir = export_model({k: v.detach().clone() for k, v in model.state_dict().items()}, model,
                              cfg.clip.model, VOCAB, root / "export", image_size=SIZE, top_k=2, extra={})
    return model, export_dir


def _pngs(n: int, seed: int = 0):
    return random_pngs(n, SIZE, seed)


def _reference(model, pngs, texts) -> np.ndarray:
    """sigmoid(logits) of the in-memory model, pixels normalised with numpy from the model's mean and std."""
    pixels = normalised_pixels(pngs, model.image_mean, model.image_std)
    with torch.no_grad():
        logits = model(**model.inputs(pixels, list(texts), torch.device("cpu")))
    return torch.sigmoid(logits.double()).numpy()


@pytest.fixture(scope="module")
def served(exported):
    from mmlnb_dist.recipes.clip.pyfunc_model import ClipClassifier, ClipPredictor

    model = ClipClassifier()
    model.predictor = ClipPredictor(exported[1], device="cpu")
    return model


TEXTS = ["a fat patch", "necrosis and mitoses", "tissue", "fat necrosis", "a patch"]


def _frame():
    return pd.DataFrame({"image": [base64.b64encode(b).decode() for b in _pngs(len(TEXTS))], "description": TEXTS})


def test_served_probabilities_equal_the_in_memory_model_in_label_order(exported, served):
    """Guards the export (weights, normalisation, labels) and the pyfunc's probability columns and top-k set."""
    model, _ = exported
    out = served.predict(None, _frame(), params={"batch_size": 2})
    want = _reference(model, _pngs(len(TEXTS)), TEXTS)
    assert [c for c in out.columns if c.startswith("prob_")] == [f"prob_{c}" for c in VOCAB]
    np.testing.assert_allclose(out[[f"prob_{c}" for c in VOCAB]].to_numpy(), want, atol=1e-5)
    top = np.argsort(-want, axis=1, kind="stable")[:, :2]  # the model's own k (2)
    assert list(out["labels"]) == ["|".join(VOCAB[i] for i in row) for row in top]
    assert set(out["selection"]) == {"top-2"}
    for row, probs in zip(out["label_probs"], want):
        assert [(n, pytest.approx(p, abs=1e-6)) for n, p in json.loads(row)] == [
            (VOCAB[i], probs[i]) for i in np.argsort(-probs, kind="stable")[:2]]


def test_top_k_and_threshold_params_choose_the_label_set(exported, served):
    """Guards `params`: top_k = number of labels predicts all; above it is refused; a threshold keeps every label
    at or above it, most probable first."""
    from mlflow.exceptions import MlflowException

    model, _ = exported
    want = _reference(model, _pngs(len(TEXTS)), TEXTS)
    every = served.predict(None, _frame(), params={"top_k": len(VOCAB)})
    assert all(len(s.split("|")) == len(VOCAB) for s in every["labels"])
    with pytest.raises(MlflowException, match=f"top_k={len(VOCAB) + 1}.*{len(VOCAB)} labels"):
        served.predict(None, _frame(), params={"top_k": len(VOCAB) + 1})
    t = float(np.median(want))
    out = served.predict(None, _frame(), params={"threshold": t})
    for got, probs in zip(out["labels"], want):
        chosen = [i for i in np.argsort(-probs, kind="stable") if probs[i] >= t]
        assert got == "|".join(VOCAB[i] for i in chosen)
    assert set(out["selection"]) == {f"p>={t:g}"}


def test_select_labels_threshold_is_inclusive_and_top_k_needs_a_k():
    """Guards `select_labels`: p >= threshold (a label exactly at it is predicted), ties by lower index."""
    from mmlnb_dist.recipes.clip.pyfunc_model import select_labels

    probs = np.array([[0.5, 0.2, 0.5, 0.7]])
    assert select_labels(probs, threshold=0.5) == [[3, 0, 2]]
    assert select_labels(probs, top_k=2) == [[3, 0]]
    with pytest.raises(ValueError, match="top_k"):
        select_labels(probs, top_k=0)


def test_the_signature_requires_only_the_image_and_names_every_label_column(exported):
    """Guards `model_package`'s signature and metadata (labels in order, the model's k)."""
    from mmlnb_dist.recipes.clip.pyfunc_model import model_package

    package = model_package(None, exported[1])
    inputs = {c.name: c.required for c in package.signature.inputs.inputs}
    assert inputs == {"image": True, "description": False, "key": False, "slide_id": False}
    outputs = [c.name for c in package.signature.outputs.inputs]
    assert [c for c in outputs if c.startswith("prob_")] == [f"prob_{c}" for c in VOCAB]
    assert package.metadata["classes"] == VOCAB and package.metadata["top_k"] == 2


@pytest.mark.parametrize("params", [{"top_k": 2, "threshold": 0.5}, {"top_k": -1}, {"threshold": 1.5},
                                    {"threshold": -0.1}], ids=["both", "negative-k", "threshold>1", "threshold<0"])
def test_params_that_predict_would_refuse_are_refused_by_the_served_model(served, params):
    """`predict --top-k K --threshold T` is refused; served with both, the threshold silently won (and a negative
    top_k fell back to the model's own k): a client could not tell which label set it got."""
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="give one of them"):
        served.predict(None, _frame(), params=params)
