"""A shard sample's `.json` as `predict` reads it. A sample whose JSON is not an object (a list) raised
AttributeError, caught for the whole input: every sample of that shard was skipped, not just the bad one. And an
integer slide id 0 is falsy: its rows were written with no slide id and its patches left out of the per-slide
results; a slide id is kept as text, so 0 is a slide like any other."""
from __future__ import annotations

import io
import json
import tarfile

import pandas as pd

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run
from mmlnb_dist.predict.inputs import _shard_items

from support.predict_stand_in import StandIn


def _shard(path, samples):
    """A plain shard: per (key, meta) a PNG and the JSON of `meta` (any JSON value)."""
    png = io.BytesIO()
    from PIL import Image
    Image.new("RGB", (8, 8), (10, 20, 30)).save(png, format="PNG")
    with tarfile.open(path, "w") as tar:
        for key, meta in samples:
            for name, data in ((f"{key}.png", png.getvalue()), (f"{key}.json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_a_sample_whose_json_is_not_an_object_is_the_only_one_skipped(tmp_path):
    tar = _shard(tmp_path / "s.tar", [("a", {"slide_id": "s1"}), ("bad", ["not", "an", "object"]),
                                      ("c", {"slide_id": "s2"})])
    failed = []
    items = _shard_items(tar, failed)
    assert [it["key"] for it in items] == ["a", "c"]
    assert len(failed) == 1 and failed[0][0] == f"{tar}:bad" and "not an object" in failed[0][1], failed


def test_a_sample_whose_json_does_not_parse_is_named_not_predicted_without_its_label(tmp_path):
    tar = _shard(tmp_path / "s.tar", [("a", {"label": "UD"}), ("c", {"label": "PD"})])
    broken = tmp_path / "broken.tar"
    with tarfile.open(tar) as src, tarfile.open(broken, "w") as dst:  # c.json cut: {"label": "PD" with no brace
        for m in src.getmembers():
            data = src.extractfile(m).read()
            data = data[:-1] if m.name == "c.json" else data
            m.size = len(data)
            dst.addfile(m, io.BytesIO(data))
    failed = []
    items = _shard_items(broken, failed)
    assert [(it["key"], it["true_label"]) for it in items] == [("a", "UD")]
    assert len(failed) == 1 and failed[0][0] == f"{broken}:c" and "not valid JSON" in failed[0][1], failed


def test_a_label_set_that_is_not_a_list_of_names_is_named_not_scored_letter_by_letter(tmp_path):
    tar = _shard(tmp_path / "s.tar", [("a", {"labels": ["UD", "D"]}), ("s", {"labels": "UD"}),
                                      ("e", {"labels": []})])
    failed = []
    items = _shard_items(tar, failed)
    assert [(it["key"], it["true_labels"]) for it in items] == [("a", ["UD", "D"])]
    assert [source for source, _ in failed] == [f"{tar}:s", f"{tar}:e"], failed
    assert "'UD', not a non-empty list of label names" in failed[0][1], failed


def test_slide_id_0_is_a_slide(tmp_path, monkeypatch):
    tar = _shard(tmp_path / "s.tar", [("a", {"slide_id": 0}), ("b", {"slide_id": 0}), ("c", {"slide_id": 1})])
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn({"classes": ["A", "B"]}))
    out = tmp_path / "p.csv"
    report = predict_to_file("models:/stand-in@champion", [tar], out)
    rows = pd.read_csv(out, keep_default_na=False, dtype=str)
    assert list(rows["slide_id"]) == ["0", "0", "1"]
    slides = pd.read_csv(report["slides_out"], keep_default_na=False, dtype=str)
    assert dict(zip(slides["slide_id"], slides["n_patches"])) == {"0": "2", "1": "1"}


def test_a_sample_given_by_name_is_told_apart_from_a_bad_one_beside_it(tmp_path):
    from mmlnb_dist.predict.inputs import collect_inputs

    tar = _shard(tmp_path / "s.tar", [("bad", ["x"]), ("c", {"slide_id": "s2"})])
    items, failed = collect_inputs([f"{tar}:missing", f"{tar}:bad", f"{tar}:c"])
    assert [it["key"] for it in items] == ["c"]
    why = dict(failed)
    assert "no sample 'missing'" in why[f"{tar}:missing"], failed
    assert "not an object" in why[f"{tar}:bad"], failed


def test_a_bad_sample_of_a_shard_given_twice_is_counted_once(tmp_path):
    """The shard's samples are predicted once (`_once`); its bad sample was listed, and counted, once per mention."""
    from mmlnb_dist.predict.inputs import collect_inputs

    tar = _shard(tmp_path / "s.tar", [("a", {"slide_id": "s1"}), ("bad", ["x"])])
    items, failed = collect_inputs([tar, tar])
    assert [it["key"] for it in items] == ["a"]
    assert failed == [(f"{tar}:bad", "its .json is not an object but a list")]


def test_an_integer_label_is_named_as_a_class_the_model_does_not_predict(tmp_path):
    """A shard of another tool labels by class index: 0 was falsy (dropped unnamed), and an index beside a name
    crashed the agreement's sorting and printing after every input was predicted."""
    from mmlnb_dist.predict.agreement import agreement, agreement_lines

    tar = _shard(tmp_path / "s.tar", [("a", {"label": 0}), ("b", {"label": 2}), ("c", {"label": "A"})])
    items = _shard_items(tar, [])
    assert [it["true_label"] for it in items] == ["0", "2", "A"]
    rows = [{"label": "A", "true_label": it["true_label"]} for it in items]
    got = agreement(rows, None, ["A", "B"], multilabel=False)
    assert got["patches"]["n"] == 1 and got["unknown"] == ["0", "2"]
    assert "left out: patches labelled 0, 2, which the model does not predict" in agreement_lines(got)
