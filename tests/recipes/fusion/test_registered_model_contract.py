"""What the registered fusion model promises its users: the documented call (`image` + `description` only) works,
the registered weights are the ones the run trained, and its card shows the exported checkpoint's metrics."""
from __future__ import annotations

import pandas as pd
import pytest

from mmlnb_dist.data.images import example_image_b64

from support.fusion import registered_model

NAME = "nb-contract"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return registered_model(tmp_path_factory.mktemp("contract"), NAME)


def test_the_documented_call_with_only_image_and_description_predicts(trained):
    """`key` and `slide_id` are carried through when given; the signature used to make them required, so the
    model card's snippet and the serving example failed with "Model is missing inputs ['key', ...]"."""
    import mlflow

    mlflow.set_tracking_uri(trained["uri"])
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    required = [c.name for c in model.metadata.get_input_schema().inputs if c.required]
    assert required == ["image"]
    out = model.predict(pd.DataFrame({"image": [example_image_b64(32)],
                                      "description": ["Sheets of small round blue cells."]}))
    assert len(out) == 1 and out["label"][0]
