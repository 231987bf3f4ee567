"""The exported fusion model, served through its MLflow pyfunc wrapper, gives the in-memory model's probabilities:
an untrained tiny classifier is exported (no training run), reloaded from the export folder alone and compared with
softmax(logits) of the model it was exported from, the images normalised here with numpy from the encoder's own
mean and std. Also: the probability columns follow the export's class order, the signature names those columns
and requires only `image`, and a text-reading model refuses rows without a description with a clear message."""
from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest
import torch

from support.served import normalised_pixels, random_pngs

CLASSES = ["UD", "PD", "D"]  # the export's order, not alphabetical
SIZE = 32


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from mmlnb_dist.config import load_config
    from mmlnb_dist.recipes.fusion.export import export_model
    from mmlnb_dist.recipes.fusion.model import build_classifier

    from support.fusion import CPU_DEMO

    root = tmp_path_factory.mktemp("fusion-export")
    cfg = load_config(CPU_DEMO, [f"run.output_dir={root}"])
    torch.manual_seed(0)
    model = build_classifier(cfg.fusion.model, len(CLASSES)).eval()
    with torch.no_grad():  # a head that does not favour one class everywhere: a column swap shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    # an encoder with its own normalisation (as pathology encoders have), not ImageNet's: the export must carry it
    model.image_encoder.mean, model.image_encoder.std = (0.7, 0.5, 0.6), (0.2, 0.25, 0.15)
    export_dir = export_model({k: v.detach().clone() for k, v in model.state_dict().items()}, model,
                              cfg.fusion.model, CLASSES, root / "export", image_size=SIZE)
    return model, export_dir


def _pngs(n: int, seed: int = 0):
    return random_pngs(n, SIZE, seed)


def _reference(model, pngs, texts) -> np.ndarray:
    """softmax(logits) of the in-memory model, pixels normalised with numpy from the encoder's mean and std."""
    enc = model.image_encoder
    pixels = normalised_pixels(pngs, enc.mean, enc.std)
    with torch.no_grad():
        logits = model(pixel_values=pixels, **model.text_encoder.tokenize(list(texts)))["logits"]
    return torch.softmax(logits.double(), -1).numpy()


def _served(export_dir):
    from mmlnb_dist.recipes.fusion.pyfunc_model import MMLNBClassifier, load_predictor

    served = MMLNBClassifier()
    served.predictor = load_predictor(export_dir, device="cpu")
    return served


@pytest.mark.parametrize("batch_size", [2, 32])
def test_served_export_gives_the_in_memory_models_probabilities_in_class_order(exported, batch_size):
    """Guards the export (weights, normalisation, class list) and the pyfunc's softmax per sample and its columns."""
    model, export_dir = exported
    pngs = _pngs(5)
    texts = ["small round blue cells", "neuropil and ganglion cells", "rosettes", "schwannian stroma", "mitoses"]
    out = _served(export_dir).predict(None, pd.DataFrame({
        "image": [base64.b64encode(b).decode() for b in pngs], "description": texts,
        "key": [f"k{i}" for i in range(5)]}), params={"batch_size": batch_size} if batch_size != 32 else None)
    assert [c for c in out.columns if c.startswith("prob_")] == [f"prob_{c}" for c in CLASSES]
    want = _reference(model, pngs, texts)
    got = out[[f"prob_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert list(out["label"]) == [CLASSES[i] for i in want.argmax(1)]
    assert list(out["key"]) == [f"k{i}" for i in range(5)]
    assert np.isfinite(out["alpha"]).all()  # the demo's PRMF fusion has a text weight per row


def test_the_signature_names_the_class_columns_and_requires_only_the_image(exported):
    """Guards `model_package`'s signature: inputs (`image` required, the rest optional), outputs in class order."""
    from mmlnb_dist.recipes.fusion.pyfunc_model import model_package

    _, export_dir = exported
    package = model_package(None, export_dir)
    inputs = {c.name: c.required for c in package.signature.inputs.inputs}
    assert inputs == {"image": True, "description": False, "key": False, "slide_id": False}
    outputs = [c.name for c in package.signature.outputs.inputs]
    assert [c for c in outputs if c.startswith("prob_")] == [f"prob_{c}" for c in CLASSES]
    assert {"label", "alpha"} <= set(outputs)
    assert package.metadata["classes"] == CLASSES and package.metadata["reads_text"] is True


def test_a_text_reading_model_refuses_rows_without_a_description_or_an_image_column(exported):
    """Guards the served model's refusals: an empty description is not scored on empty text, no image no answer."""
    from mlflow.exceptions import MlflowException

    _, export_dir = exported
    served = _served(export_dir)
    image = base64.b64encode(_pngs(1)[0]).decode()
    with pytest.raises(MlflowException, match="1 of 2 rows have none"):
        served.predict(None, pd.DataFrame({"image": [image, image], "description": ["cells", ""]}))
    with pytest.raises(MlflowException, match="'image' column"):  # a bad request (HTTP 400), as the first
        served.predict(None, pd.DataFrame({"description": ["cells"]}))
