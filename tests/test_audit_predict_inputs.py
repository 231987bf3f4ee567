"""Audit of `predict`'s inputs and run loop: a shard set's --split chooses its samples (an absent split, or a split
of plain images, refused), a whole-slide file is refused, a shard sample gone since listing is still yielded (to
be reported unreadable), images without a description are refused only when readable, and a descriptions table
gives each image its text and slide (so a slides file is written)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmlnb_dist.predict import PredictError, collect_inputs, predict_to_file
from mmlnb_dist.predict import run as predict_run
from mmlnb_dist.predict.inputs import require_descriptions, with_image_bytes
from support.fusion import make_shards


def _png(path, side=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((side, side, 3), side, dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("s"), n=12, size=16)


def _split_files(shards, split):
    manifest = json.loads((shards / "manifest.json").read_text())
    return {str(shards / s["file"]) for s in manifest["splits"][split]["shards"]}


def test_split_chooses_the_shard_set_samples_and_an_absent_split_is_reported(shards):
    """--split val reads only the val shards; a split the set lacks is a failure, not an empty run."""
    items, failed = collect_inputs([shards], "val")
    assert items and failed == []
    assert {it["source"].rsplit(":", 1)[0] for it in items} == _split_files(shards, "val")
    items, failed = collect_inputs([shards], "test")
    assert items == [] and len(failed) == 1 and failed[0][0] == str(shards) and "'test'" in failed[0][1]


def test_split_without_any_shard_set_input_is_refused(tmp_path):
    """--split with only image files would predict every image: refused."""
    _png(tmp_path / "a.png")
    with pytest.raises(PredictError, match="--split val"):
        collect_inputs([tmp_path / "a.png"], "val")


def test_a_whole_slide_file_is_refused_not_predicted(tmp_path):
    """A .svs given as an input is listed as failed (tile it first), not scored as one patch."""
    (tmp_path / "s.svs").write_bytes(b"II*\x00")
    items, failed = collect_inputs([tmp_path / "s.svs", _png(tmp_path / "p.png")])
    assert [it["key"] for it in items] == ["p"]
    assert failed[0][0] == str(tmp_path / "s.svs") and "whole-slide" in failed[0][1]


def test_a_shard_sample_gone_since_listing_is_still_yielded_without_image(shards):
    """A listed sample no longer in its shard comes out (with no bytes), so it is reported, not silently lost."""
    items, _ = collect_inputs([shards], "train")
    first = items[0]
    gone = {**first, "key": "gone", "sample_key": "gone", "source": f"{first['tar']}:gone"}
    out = list(with_image_bytes([dict(first), gone]))
    assert [it["key"] for it in out] == [first["key"], "gone"]
    assert out[0]["data"] and out[1].get("data") is None


def test_descriptions_are_required_of_readable_images_only(tmp_path):
    """Blank text counts as none; an unreadable image without text is left to be reported unreadable."""
    broken = tmp_path / "b.png"
    broken.write_bytes(b"\x89PNG not an image")
    require_descriptions("m", [{"source": str(broken), "path": broken, "description": ""},
                               {"source": "ok", "path": _png(tmp_path / "ok.png"), "description": "text"}])
    with pytest.raises(PredictError, match="1 of 1"):
        require_descriptions("m", [{"source": "p", "path": _png(tmp_path / "p.png"), "description": "  \n"}])


class _Meta:
    def __init__(self, metadata):
        self.metadata, self.model_uuid = metadata, "u"


class _Echo:
    """Echoes each image's description into a `text` column, so a row shows the text the model was given."""

    def __init__(self, metadata=None):
        self.metadata = _Meta(metadata or {})

    def predict(self, frame, params=None):
        return pd.DataFrame({"key": frame["key"], "label": "A", "text": list(frame["description"]), "prob_A": 0.75,
                             "prob_B": 0.25, "slide_id": frame["slide_id"]})


def test_a_descriptions_table_gives_each_image_its_text_and_slide(tmp_path, monkeypatch):
    """Rows of --descriptions reach the model matched to their images, and their slide ids give a slides file."""
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: _Echo({"reads_text": True}))
    folder = tmp_path / "in"
    for name in ("a", "b", "c"):
        _png(folder / f"{name}.png")
    table = tmp_path / "d.csv"
    table.write_text("path,description,slide_id\n" + "".join(
        f"{folder / n}.png,text {n},S{1 if n != 'c' else 2}\n" for n in ("a", "b", "c")))
    report = predict_to_file("models:/m@c", [folder], tmp_path / "p.jsonl", descriptions=table)
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [(r["key"], r["text"], r["slide_id"]) for r in rows] == [("a", "text a", "S1"), ("b", "text b", "S1"),
                                                                      ("c", "text c", "S2")]
    slides = [json.loads(line) for line in (tmp_path / "p.slides.jsonl").read_text().splitlines()]
    assert report["slides_out"] == str(tmp_path / "p.slides.jsonl")
    assert sorted(s["slide_id"] for s in slides) == ["S1", "S2"]


def test_a_shard_sample_without_description_is_refused_before_its_image_is_read(shards):
    """A shard sample's image is read only when predicted, so it counts as readable: blank text is refused up front."""
    items, _ = collect_inputs([shards], "train")
    with pytest.raises(PredictError, match="1 of 1"):
        require_descriptions("m", [{**items[0], "description": ""}])


def test_blank_vlm_descriptions_are_refused_for_a_model_that_reads_text(tmp_path, monkeypatch):
    """With --vlm, images the VLM left without text are refused, not scored on empty text."""
    import mmlnb_dist.recipes.vlm.merge as merge

    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: _Echo({"reads_text": True}))
    monkeypatch.setattr(predict_run, "_vlm_describer", lambda *a, **k: lambda images: [""] * len(images))
    monkeypatch.setattr(merge, "fine_tune_sha256", lambda *a, **k: "sha")
    with pytest.raises(PredictError, match="have none"):
        predict_to_file("models:/m@c", [_png(tmp_path / "a.png")], tmp_path / "p.jsonl", vlm="tiny-vlm")
    assert not (tmp_path / "p.jsonl").exists()
