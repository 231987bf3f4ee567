"""A top-k larger than the model's number of labels is refused, naming both numbers, by `predict --top-k` and by
the registered model's `params={'top_k': K}`. It was accepted: every label was predicted and the selection column
said "top-50" for a 6-label model."""
from __future__ import annotations

import pandas as pd
import pytest

from mmlnb_dist.cli import main

from support.clip import VOCAB
from support.clip_registry import AUTO_NAME, raw_split, registered_run

MODEL = f"models:/{AUTO_NAME}@champion"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    yield from registered_run(tmp_path_factory.mktemp("clip-topk"))


def test_predict_refuses_a_top_k_above_the_number_of_labels(trained, tmp_path, capsys):
    out = tmp_path / "preds.csv"
    code = main(["predict", "--model", MODEL, str(trained["shards"]), "--split", "val", "--out", str(out),
                 "--uri", trained["uri"], "--top-k", "50"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--top-k" in err and "50" in err and f"{len(VOCAB)} labels" in err, err
    assert not out.exists()
    # the largest allowed k still predicts: every label, most probable first
    assert main(["predict", "--model", MODEL, str(trained["shards"]), "--split", "val", "--out", str(out),
                 "--uri", trained["uri"], "--top-k", str(len(VOCAB))]) == 0
    assert set(pd.read_csv(out)["selection"]) == {f"top-{len(VOCAB)}"}


def test_the_registered_model_refuses_a_top_k_param_above_the_number_of_labels(trained):
    import base64

    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(trained["uri"])
    model = mlflow.pyfunc.load_model(MODEL)
    sample = raw_split(trained["shards"], "val")[0]
    frame = pd.DataFrame({"image": [base64.b64encode(sample["png"]).decode()], "description": [sample["text"]]})
    with pytest.raises(MlflowException, match=rf"top_k.*50.*{len(VOCAB)} labels"):
        model.predict(frame, params={"top_k": 50})
    assert len(model.predict(frame, params={"top_k": len(VOCAB)})["labels"][0].split("|")) == len(VOCAB)
