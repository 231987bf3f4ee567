"""Audit of what `predict` writes and passes on, with a stand-in model: a CSV of rows with different columns (shard
samples with a true label beside plain images) keeps every column; no slide ids, no slides file; the served model
gets the batch size and label-set rule asked for; a multi-label slides file chooses its label sets by the model's
own k, or by the threshold given."""
from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
from PIL import Image

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run

MODEL = "models:/stand-in@champion"


class Meta:
    def __init__(self, metadata):
        self.metadata, self.model_uuid = metadata, "uuid-1"


class StandIn:
    """Probabilities from the image bytes; records the params; multi-label (a `labels` column) when its metadata
    says so."""

    def __init__(self, metadata=None):
        self.metadata, self.params = Meta(metadata or {}), []

    def predict(self, frame, params=None):
        self.params.append(dict(params or {}))
        p = np.array([[(len(b) % 89) / 89, (len(b) % 53) / 53, (len(b) % 31) / 31] for b in frame["image"]])
        out = pd.DataFrame({"key": frame["key"], "slide_id": frame["slide_id"],
                            **{f"prob_{c}": p[:, i] for i, c in enumerate("ABC")}})
        if self.metadata.metadata.get("task") == "multilabel":
            return out.assign(labels="A")
        return out.assign(label=["ABC"[i] for i in p.argmax(1)])


def _images(folder, n=4):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (6 + i, 9, 3), dtype=np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_a_csv_of_plain_images_and_labelled_shard_samples_keeps_the_true_label_column(tmp_path, monkeypatch):
    from support.shards import make_shard_set

    shards = make_shard_set(tmp_path, per_class=1, max_per_shard=2, val_fraction=0.0, size=16)
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    report = predict_to_file(MODEL, [_images(tmp_path / "in", 1), shards], tmp_path / "p.csv")
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == report["predicted"] > 1 and rows[0]["true_label"] == ""
    assert all(r["true_label"] for r in rows[1:])
    assert report["slides_out"] is None and not (tmp_path / "p.slides.csv").exists()  # no slide ids: no file


def test_the_model_gets_the_batch_size_and_label_set_rule_asked_for(tmp_path, monkeypatch):
    folder = _images(tmp_path / "in")
    single = StandIn()
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: single)
    predict_to_file(MODEL, [folder], tmp_path / "a.csv", batch_size=7)
    assert single.params == [{"batch_size": 7}]
    for kwargs, want in (({"top_k": 2}, {"top_k": 2, "threshold": 0.0}), ({"threshold": 0.5}, {"top_k": 0,
                                                                                                 "threshold": 0.5})):
        multi = StandIn({"task": "multilabel", "classes": list("ABC"), "top_k": 1})
        monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: multi)
        predict_to_file(MODEL, [folder], tmp_path / "b.csv", batch_size=3, **kwargs)
        assert multi.params == [{"batch_size": 3, **want}]


def test_a_multilabel_slides_file_uses_the_models_own_k_or_the_threshold_given(tmp_path, monkeypatch):
    folder = _images(tmp_path / "in")
    table = tmp_path / "t.csv"
    table.write_text("path,description,slide_id\n" + "".join(f"{folder}/p{i}.png,text,S{i % 2}\n" for i in range(4)))
    monkeypatch.setattr(predict_run, "load_model",
                        lambda *a, **k: StandIn({"task": "multilabel", "classes": list("ABC"), "top_k": 2}))
    for kwargs, selection in (({}, "top-2"), ({"threshold": 0.5}, "p>=0.5")):
        out = tmp_path / "p.jsonl"
        predict_to_file(MODEL, [folder], out, descriptions=table, **kwargs)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        slides = [json.loads(line) for line in out.with_name("p.slides.jsonl").read_text().splitlines()]
        assert [s["slide_id"] for s in slides] == ["S0", "S1"] and {s["selection"] for s in slides} == {selection}
        for s in slides:
            mean = np.mean([[r[f"prob_{c}"] for c in "ABC"] for r in rows if r["slide_id"] == s["slide_id"]], 0)
            order = ["ABC"[i] for i in np.argsort(-mean, kind="stable")]
            want = order[:2] if not kwargs else [c for c in order if mean["ABC".index(c)] >= 0.5]
            assert s["labels"] == "|".join(want)


def test_a_jsonl_output_is_strict_json_with_a_missing_value_as_null(tmp_path, monkeypatch):
    """A fusion model without the PRMF weight gives `alpha` NaN; JSONL wrote it as a bare `NaN`, which Python reads
    but strict JSON readers (jq, JavaScript, Spark) refuse. Missing values are `null`, as in the served model's
    JSON."""
    class WithoutAlpha(StandIn):
        def predict(self, frame, params=None):
            return super().predict(frame, params).assign(alpha=float("nan"), margin=float("inf"))

    def strict(constant):
        raise ValueError(f"not JSON: {constant}")

    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: WithoutAlpha())
    report = predict_to_file(MODEL, [_images(tmp_path / "in", 2)], tmp_path / "p.jsonl")
    rows = [json.loads(line, parse_constant=strict) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == report["predicted"] == 2
    assert all(r["alpha"] is None and r["margin"] is None and 0 <= r["prob_A"] <= 1 for r in rows)
