"""A `predict` whose inputs carry no slide ids, into an --out an earlier run wrote with slides, removes that run's
`<out stem>.slides.<ext>`: it was left beside the new predictions, aggregates of other inputs that read as this
run's (the skipped-inputs file was already removed the same way)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run
from support.fusion import make_shards
from support.predict_stand_in import StandIn


def test_a_run_without_slides_leaves_no_slides_file_of_an_earlier_run(tmp_path, monkeypatch):
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    shards = make_shards(tmp_path, n=12, size=16)  # samples with slide ids
    out = tmp_path / "preds.csv"
    first = predict_to_file("m", [shards], out, split="val")
    assert first["slides_out"] and (tmp_path / "preds.slides.csv").is_file()
    image = tmp_path / "p.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(image)
    second = predict_to_file("m", [image], out)
    assert second["slides_out"] is None and not (tmp_path / "preds.slides.csv").exists()
