"""Audit of `predict_to_file` with a stand-in model (no training): one row per readable input, in input order,
with its model output; unreadable inputs listed, not predicted; an interrupted job resumes after its last complete
chunk (counting unreadable inputs) with no row twice; a journal of another job is not continued; bad arguments
and model folders are refused before anything is predicted."""
from __future__ import annotations

import base64
import json
import logging

import pandas as pd
import pytest
from PIL import Image

from mmlnb_dist.predict import ModelNotFound, PredictError, UnsafeModel, predict_to_file
from mmlnb_dist.predict import run as predict_run

from support.predict_stand_in import StandIn, images_with_a_broken_one

MODEL = "models:/stand-in@champion"


def _use(monkeypatch, model):
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: model)
    return model


@pytest.fixture
def images(tmp_path):
    """7 inputs in a folder: 6 PNGs of different sizes and `b_broken.png` (second: in the first chunk of 2)."""
    return images_with_a_broken_one(tmp_path / "in", ["a", "c", "d", "e", "f", "g"])


READABLE = ["a", "c", "d", "e", "f", "g"]


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_row_per_readable_input_in_order_with_its_output(images, tmp_path, monkeypatch):
    model = _use(monkeypatch, StandIn())
    report = predict_to_file(MODEL, [images], tmp_path / "p.jsonl", chunk_size=2)
    rows = _rows(tmp_path / "p.jsonl")
    assert [r["key"] for r in rows] == READABLE == model.seen
    for r in rows:
        p = (len(base64.b64encode((images / f"{r['key']}.png").read_bytes())) % 97) / 97
        assert r["source"] == str(images / f"{r['key']}.png") and r["prob_A"] == pytest.approx(p)
        assert r["slide_id"] is None
    assert report["predicted"] == 6 and [src for src, _ in report["failed"]] == [str(images / "b_broken.png")]
    assert report["resumed"] == 0 and not (tmp_path / "p.jsonl.resume").exists()
    _use(monkeypatch, StandIn())
    predict_to_file(MODEL, [images], tmp_path / "p.csv", chunk_size=4)  # chunking changes nothing; CSV holds the same
    assert pd.read_csv(tmp_path / "p.csv")[["key", "label"]].values.tolist() == [[r["key"], r["label"]] for r in rows]


def test_an_interrupted_job_resumes_after_its_last_complete_chunk_without_a_row_twice(images, tmp_path, monkeypatch):
    """Killed at the third chunk (two of 2 inputs done, one unreadable), with a line cut by the kill: the rerun
    predicts only the last three inputs, reports the unreadable input once, and writes what one run writes."""
    out = tmp_path / "p.jsonl"
    _use(monkeypatch, StandIn(stop_at=3))
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(MODEL, [images], out, chunk_size=2)
    journal = tmp_path / "p.jsonl.resume" / "journal.jsonl"
    assert [r.get("upto") for r in _rows(journal)] == [None, 2, 4] and not out.exists()
    with open(journal, "a") as fh:
        fh.write('{"upto": 6, "rows": [{"key": "')
    model = _use(monkeypatch, StandIn())
    report = predict_to_file(MODEL, [images], out, chunk_size=2)
    assert model.seen == ["e", "f", "g"] and report["resumed"] == 4 and report["predicted"] == 6
    assert [src for src, _ in report["failed"]] == [str(images / "b_broken.png")]
    assert not journal.parent.exists()
    _use(monkeypatch, StandIn())
    predict_to_file(MODEL, [images], tmp_path / "whole.jsonl", chunk_size=2)
    assert _rows(out) == _rows(tmp_path / "whole.jsonl")


def test_a_resume_killed_again_continues_after_the_kept_chunks(images, tmp_path, monkeypatch):
    out = tmp_path / "p.jsonl"
    _use(monkeypatch, StandIn(stop_at=2))
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(MODEL, [images], out, chunk_size=2)
    journal = tmp_path / "p.jsonl.resume" / "journal.jsonl"
    with open(journal, "a") as fh:
        fh.write('{"upto": 4, "ro')  # cut
    _use(monkeypatch, StandIn(stop_at=2))
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(MODEL, [images], out, chunk_size=2)
    assert [r.get("upto") for r in _rows(journal)] == [None, 2, 4]
    model = _use(monkeypatch, StandIn())
    assert predict_to_file(MODEL, [images], out, chunk_size=2)["resumed"] == 4 and model.seen == ["e", "f", "g"]
    assert [r["key"] for r in _rows(out)] == READABLE


def test_the_journal_of_another_job_starts_over(images, tmp_path, monkeypatch, caplog):
    out = tmp_path / "p.jsonl"
    _use(monkeypatch, StandIn(stop_at=2))
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(MODEL, [images], out, chunk_size=2)
    model = _use(monkeypatch, StandIn())
    model.metadata.model_uuid = "uuid-2"  # the alias moved to another model version
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.predict"):
        report = predict_to_file(MODEL, [images], out, chunk_size=2)
    assert "another job (changed: model_uuid)" in caplog.text
    assert report["resumed"] == 0 and model.seen == READABLE and [r["key"] for r in _rows(out)] == READABLE


@pytest.mark.parametrize("out, kwargs, message", [
    ("p.txt", {}, "must end in .csv or .jsonl"),
    ("p.csv", {"chunk_size": 0}, "--chunk-size must be at least 1"),
    ("p.csv", {"top_k": 0}, "--top-k must be at least 1"),
    ("p.csv", {"threshold": 0.0}, r"--threshold must be in \(0, 1\]"),
    ("p.csv", {"threshold": 1.01}, r"--threshold must be in \(0, 1\]"),
    ("p.csv", {"top_k": 1, "threshold": 0.5}, "both given"),
])
def test_bad_arguments_are_refused_before_any_input_is_read(tmp_path, out, kwargs, message):
    with pytest.raises(PredictError, match=message):
        predict_to_file(MODEL, [tmp_path / "missing"], tmp_path / out, **kwargs)


def test_a_single_label_model_refuses_a_label_set_rule_and_a_multilabel_one_a_top_k_over_its_labels(
        images, tmp_path, monkeypatch):
    _use(monkeypatch, StandIn())
    with pytest.raises(PredictError, match="predicts one class per image"):
        predict_to_file(MODEL, [images], tmp_path / "p.csv", threshold=1.0)
    _use(monkeypatch, StandIn({"task": "multilabel", "classes": ["A", "B"]}))
    with pytest.raises(PredictError, match="--top-k 3 is more than the 2 labels"):
        predict_to_file(MODEL, [images], tmp_path / "p.csv", top_k=3)
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "p.csv.resume").exists()
    assert predict_to_file(MODEL, [images], tmp_path / "p.csv", top_k=2)["predicted"] == 6  # every label: allowed


def test_a_model_that_reads_text_refuses_images_without_descriptions(images, tmp_path, monkeypatch):
    model = _use(monkeypatch, StandIn({"reads_text": True}))
    with pytest.raises(PredictError, match="reads a description with each image, and 7 of 7 have none"):
        predict_to_file(MODEL, [images], tmp_path / "p.csv")
    assert model.calls == 0 and not (tmp_path / "p.csv").exists()


def test_inputs_that_cannot_be_read_are_listed_and_nothing_left_is_refused(images, tmp_path, monkeypatch):
    from mmlnb_dist.predict import collect_inputs

    empty = tmp_path / "empty"
    empty.mkdir()
    items, failed = collect_inputs([tmp_path / "gone.png", empty, images / "a.png"])
    assert [it["key"] for it in items] == ["a"]
    assert failed == [(str(tmp_path / "gone.png"), "no such file or folder"), (str(empty), "folder holds no images")]
    with pytest.raises(PredictError, match="nothing to predict: .*gone.png: no such file or folder"):
        predict_to_file(MODEL, [tmp_path / "gone.png"], tmp_path / "p.csv")


def test_local_model_folders_that_are_missing_a_training_export_or_pickled_are_refused(tmp_path):
    from mmlnb_dist.predict import load_model

    with pytest.raises(ModelNotFound, match="no such folder"):
        load_model(str(tmp_path / "nowhere"))
    export = tmp_path / "run" / "export"
    export.mkdir(parents=True)
    (export / "model_config.json").write_text("{}")
    with pytest.raises(ModelNotFound, match="is a training export"):
        load_model(str(export))
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "MLmodel").write_text("flavors: {}\n")
    (pickled / "python_model.pkl").write_bytes(b"\x80\x04.")
    with pytest.raises(UnsafeModel, match="python_model.pkl"):
        load_model(str(pickled))


def test_an_image_up_to_the_largest_patch_side_is_predicted_and_a_larger_one_is_not(tmp_path):
    from mmlnb_dist.predict.inputs import MAX_PATCH_SIDE, decoded

    items = []
    for side in (MAX_PATCH_SIDE, MAX_PATCH_SIDE + 1):
        path = tmp_path / f"w{side}.png"
        Image.new("RGB", (side, 2)).save(path)
        items.append({"key": path.stem, "source": str(path), "path": path})
    failed = []
    good, images = decoded(items, failed)
    assert [it["key"] for it in good] == [f"w{MAX_PATCH_SIDE}"] and images[0].size == (MAX_PATCH_SIDE, 2)
    assert [src for src, _ in failed] == [str(tmp_path / f"w{MAX_PATCH_SIDE + 1}.png")]
    assert "larger than any patch" in failed[0][1]


def test_every_sample_of_a_shard_set_is_predicted_from_its_image_with_its_true_label(tmp_path, monkeypatch):
    """Shard samples are read with their image bytes (chunks of 3 across shards of 2): one row per sample in
    manifest order, made from that sample's image, beside the label the shard gives it."""
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet
    from support.shards import make_shard_set

    shards = make_shard_set(tmp_path, per_class=2, max_per_shard=2, val_fraction=0.0, size=16)
    samples = [s for _, _, e in ShardSet.open(shards).entries() for s in iter_shard_samples(shards / e["file"])]
    _use(monkeypatch, StandIn())
    report = predict_to_file(MODEL, [shards], tmp_path / "p.jsonl", chunk_size=3)
    rows = _rows(tmp_path / "p.jsonl")
    assert report["failed"] == [] and [r["key"] for r in rows] == [s["__key__"] for s in samples]
    for r, s in zip(rows, samples):
        made_from = len(base64.b64encode(s["png"])) + 7 * len(r["description"] or "")  # (StandIn's rule)
        assert r["prob_A"] == pytest.approx((made_from % 97) / 97)
        assert r["true_label"] == json.loads(s["json"])["label"]


# Where an input's slide, description and true label come from when several sources could give them.

class Recording(StandIn):
    """A StandIn that keeps each row's description and slide id as the served model received them."""

    def predict(self, frame, params=None):
        self.received = getattr(self, "received", {})
        self.received.update(zip(frame["key"], zip(frame["description"], frame["slide_id"])))
        return super().predict(frame, params)


def test_a_descriptions_table_gives_images_their_slides_and_a_shard_sample_keeps_its_own(tmp_path, monkeypatch):
    """Loose images take the table's slide ids (and are aggregated per slide); a shard sample tiled from a slide
    keeps that slide even where a table row names another."""
    from mmlnb_dist.data.build import build_shards
    from mmlnb_dist.data.config import BuildConfig
    from support.shards import CLASSES, specs_for, write_patch_folder

    folder = write_patch_folder(tmp_path / "src", per_class=1, size=16)
    pngs = sorted(folder.rglob("*.png"))
    table = tmp_path / "t.csv"
    table.write_text("path,description,slide_id\n" + "".join(f"{p},text {i},T{i % 2}\n" for i, p in enumerate(pngs)))
    model = _use(monkeypatch, Recording())
    predict_to_file(MODEL, [folder], tmp_path / "p.jsonl", descriptions=table)
    by_source = {r["source"]: r["slide_id"] for r in _rows(tmp_path / "p.jsonl")}
    assert by_source == {str(p): f"T{i % 2}" for i, p in enumerate(pngs)}
    assert sorted(r["slide_id"] for r in _rows(tmp_path / "p.slides.jsonl")) == ["T0", "T1"]

    shards = tmp_path / "shards"
    build_shards(specs_for(folder, slides_per_class=1), shards, BuildConfig(val_fraction=0.0, image_format="png",
                                                                           image_size=16), CLASSES, progress=False)
    keyed = tmp_path / "k.csv"
    keyed.write_text("key,description,slide_id\n" + "".join(f"{p.stem},text,other\n" for p in pngs))
    predict_to_file(MODEL, [shards], tmp_path / "s.jsonl", descriptions=keyed)
    rows = _rows(tmp_path / "s.jsonl")
    assert len(rows) == len(pngs) and all(r["slide_id"] == f"{r['true_label']}-slide0" for r in rows)
    assert model.received[rows[0]["key"]] == ("text", rows[0]["slide_id"])


def test_with_vlm_the_vlm_writes_every_description_and_an_empty_one_is_refused(images, tmp_path, monkeypatch):
    """`--vlm` describes each readable image (a table's texts are not used, its slides are); a model that reads
    text refuses a chunk the VLM left a description empty in, before predicting it."""
    from mmlnb_dist.recipes.vlm import merge

    monkeypatch.setattr(merge, "fine_tune_sha256", lambda vlm, adapter: "sha")
    texts = iter(["written 1", "written 2", "written 3", "written 4", "written 5", "written 6"])
    monkeypatch.setattr(predict_run, "_vlm_describer", lambda *a: lambda imgs: [next(texts) for _ in imgs])
    table = tmp_path / "t.csv"
    table.write_text("path,description,slide_id\n" + "".join(f"{images / n}.png,table text,S{n}\n" for n in READABLE))
    model = _use(monkeypatch, Recording({"reads_text": True}))
    report = predict_to_file(MODEL, [images], tmp_path / "p.jsonl", vlm="tiny-vlm", descriptions=table)
    assert report["predicted"] == 6
    assert sorted(model.received.values()) == [(f"written {i + 1}", f"S{n}") for i, n in enumerate(READABLE)]

    monkeypatch.setattr(predict_run, "_vlm_describer", lambda *a: lambda imgs: ["text"] * (len(imgs) - 1) + [" "])
    model = _use(monkeypatch, Recording({"reads_text": True}))
    with pytest.raises(PredictError, match="reads a description with each image, and 1 of 1 have none"):
        predict_to_file(MODEL, [images], tmp_path / "q.jsonl", vlm="tiny-vlm", chunk_size=1)
    assert model.calls == 0


def test_a_multilabel_model_gets_the_label_set_of_a_labelled_sample_beside_its_prediction(tmp_path, monkeypatch):
    """A multi-label prediction (a `labels` column) is written beside the sample's true label set, `|`-joined,
    and no single `true_label`."""
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet
    from support.clip import caption_shards

    shards = caption_shards(tmp_path, n=8, size=16)
    truth = {s["__key__"]: json.loads(s["json"])["labels"]
             for _, _, e in ShardSet.open(shards).entries() for s in iter_shard_samples(shards / e["file"])}

    class MultiLabel(StandIn):
        def predict(self, frame, params=None):
            out = super().predict(frame, params)
            return out.assign(labels=["A"] * len(out)).drop(columns="label")

    _use(monkeypatch, MultiLabel({"task": "multilabel", "classes": ["A", "B"], "top_k": 1}))
    predict_to_file(MODEL, [shards], tmp_path / "p.jsonl")
    rows = _rows(tmp_path / "p.jsonl")
    assert len(rows) == len(truth) == 8
    assert all(r["true_labels"] == "|".join(truth[r["key"]]) and "true_label" not in r for r in rows)
    # a single-label model on the same samples gets their label set too, not the set's first member (the shard's
    # `label`) as if it were the one truth (tests/test_predict_single_label_model_on_label_sets.py)
    _use(monkeypatch, StandIn())
    predict_to_file(MODEL, [shards], tmp_path / "q.jsonl")
    assert all(r["true_labels"] == "|".join(truth[r["key"]]) and "true_label" not in r
               for r in _rows(tmp_path / "q.jsonl"))
