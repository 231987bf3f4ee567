"""`predict` where no input could be read (every image broken): the CSV it wrote held one empty line, which
pandas, csvkit and a spreadsheet refuse ("No columns to parse from file"), so a script reading the predictions
failed on it instead of finding no rows. Now the CSV has the model's columns (its signature's outputs, and the
`source` predict adds) over no rows."""
from __future__ import annotations

import pandas as pd
from mlflow.models.signature import infer_signature

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run

from support.predict_stand_in import StandIn

COLUMNS = ["key", "label", "prob_A", "prob_B", "slide_id", "description"]


def test_a_csv_of_no_prediction_has_the_models_columns(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(b"not an image")
    model = StandIn()
    example = pd.DataFrame({"key": ["k"], "label": ["A"], "prob_A": [0.5], "prob_B": [0.5], "slide_id": [""],
                            "description": [""]})
    signature = infer_signature(pd.DataFrame({"image": [""]}), example)
    model.metadata.get_output_schema = lambda: signature.outputs
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: model)
    report = predict_to_file("models:/stand-in@champion", [folder], tmp_path / "p.csv")
    assert report["predicted"] == 0 and len(report["failed"]) == 2
    frame = pd.read_csv(tmp_path / "p.csv")
    assert frame.empty and list(frame.columns) == [*COLUMNS, "source"]

