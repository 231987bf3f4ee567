"""A single-label model (fusion) predicting a multi-label shard set: each sample's `json` holds its label set and,
as `label`, the first label of that set. `predict` wrote that first label as the row's `true_label` and printed
"accuracy" and "balanced accuracy" against it, as if a patch labelled {UD, stroma} were wrong to be called stroma.
Now such a row carries its set (`true_labels`) and no single truth: nothing is scored against an arbitrary member."""
from __future__ import annotations

import pandas as pd

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run

from support.clip import caption_shards
from support.predict_stand_in import StandIn


def test_rows_of_label_sets_are_not_scored_against_their_first_label(tmp_path, monkeypatch):
    shards = caption_shards(tmp_path, n=12, size=16)
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    out = tmp_path / "p.csv"
    report = predict_to_file("models:/stand-in@champion", [shards], out)
    rows = pd.read_csv(out, keep_default_na=False)
    assert "true_label" not in rows.columns, rows.columns
    assert all(rows["true_labels"].str.len() > 0), rows["true_labels"]
    assert report["agreement"] is None, report["agreement"]
