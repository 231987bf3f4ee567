"""Audit of `predict`'s journal (`predict/journal.py`) with a stand-in model (no training): a job killed and run
again, even with another chunk size, writes the predictions, per-slide file, skipped inputs and writer warnings of
one uninterrupted run; a journal another job took over is not continued by the first job later; every part of the
job (label-set rule, description and slide columns, VLM adapter, inputs) makes a journal of other settings start
over, naming the change; a second job into the same output is refused before the model loads."""
from __future__ import annotations

import hashlib
import json
import logging

import pytest
from PIL import Image

from mmlnb_dist.core.runlock import FolderInUseError, FolderLock
from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run
from mmlnb_dist.predict.journal import digest, file_digest

from support.predict_stand_in import StandIn, images_with_a_broken_one

MODEL = "models:/stand-in@champion"
NAMES = ["a", "b_broken", "c", "d", "e", "f", "g"]
READABLE = [n for n in NAMES if n != "b_broken"]


@pytest.fixture
def images(tmp_path):
    """7 inputs: 6 PNGs of different sizes and `b_broken.png` (unreadable, in the first chunk of 2)."""
    return images_with_a_broken_one(tmp_path / "in", READABLE)


def _use(monkeypatch, model):
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: model)
    return model


def _vlm(monkeypatch, tmp_path):
    """A stand-in VLM that writes a description from each image's size, and its adapter digest; adapter folders
    `ad1` and `ad2` (relative to the current folder, `tmp_path`), which predict checks before the model loads."""
    from mmlnb_dist.recipes.vlm import merge

    monkeypatch.chdir(tmp_path)
    for name in ("ad1", "ad2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text("{}")

    monkeypatch.setattr(merge, "fine_tune_sha256", lambda vlm, adapter: f"sha-{adapter}")
    monkeypatch.setattr(predict_run, "_vlm_describer",
                        lambda *a: lambda imgs: [f"a patch of {im.size[0]} x {im.size[1]} px" for im in imgs])


def _table(tmp_path, images):
    """A descriptions table with two text columns and two slide columns."""
    table = tmp_path / "table.csv"
    table.write_text("path,description,text,slide_id,case\n" + "".join(
        f"{images / n}.png,text {n},other text {n},S{i % 3},C{i % 2}\n" for i, n in enumerate(NAMES)))
    return table


def _outputs(out):
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    slides = out.with_name(out.stem + ".slides" + out.suffix)
    return rows, [json.loads(line) for line in slides.read_text().splitlines()] if slides.exists() else None


def test_a_resumed_job_writes_what_one_run_writes_even_with_another_chunk_size(images, tmp_path, monkeypatch):
    """Killed at its third chunk of 2 (the unreadable input in the first), resumed with chunks of 3: the same
    rows, per-slide file, skipped inputs and writer warnings (with their counts) as one uninterrupted run, and only
    the inputs after the journaled chunks predicted again."""
    _vlm(monkeypatch, tmp_path)
    meta = {"reads_text": True, "descriptions_written_by": None}  # trained on reference text: the VLM's is named
    kwargs = dict(descriptions=_table(tmp_path, images), vlm="tiny-vlm", adapter="ad1")
    _use(monkeypatch, StandIn(meta))
    whole = predict_to_file(MODEL, [images], tmp_path / "whole.jsonl", chunk_size=2, **kwargs)
    assert whole["predicted"] == 6 and len(whole["warnings"]) == 1 and "6 of 6 images here" in whole["warnings"][0]

    out = tmp_path / "p.jsonl"
    _use(monkeypatch, StandIn(meta, stop_at=3))
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(MODEL, [images], out, chunk_size=2, **kwargs)
    model = _use(monkeypatch, StandIn(meta))
    resumed = predict_to_file(MODEL, [images], out, chunk_size=3, **kwargs)
    assert model.seen == ["e", "f", "g"] and resumed["resumed"] == 4
    assert _outputs(out) == _outputs(tmp_path / "whole.jsonl") and _outputs(out)[1]
    assert {k: resumed[k] for k in ("predicted", "failed", "warnings", "agreement")} == {
        k: whole[k] for k in ("predicted", "failed", "warnings", "agreement")}


def test_a_journal_another_job_took_over_is_not_continued_by_the_first_job(images, tmp_path, monkeypatch):
    """Job A is killed after one chunk, job B (other inputs) into the same output is killed after one chunk, then A
    runs again: B's journal is of another job, so A starts over; A's output holds none of B's rows."""
    other = tmp_path / "other"
    other.mkdir()
    for name in ("x", "y", "z"):
        Image.new("RGB", (5, 5), (9, 9, 9)).save(other / f"{name}.png")
    out = tmp_path / "p.jsonl"
    for inputs in ([images], [other]):
        _use(monkeypatch, StandIn(stop_at=2))
        with pytest.raises(KeyboardInterrupt):
            predict_to_file(MODEL, inputs, out, chunk_size=2)
    model = _use(monkeypatch, StandIn())
    report = predict_to_file(MODEL, [images], out, chunk_size=2)
    assert report["resumed"] == 0 and model.seen == READABLE
    assert [r["key"] for r in _outputs(out)[0]] == READABLE


@pytest.mark.parametrize("first, then, changed", [
    ({"top_k": 1}, {"top_k": 2}, "top_k"),
    ({"top_k": 1}, {"threshold": 0.5}, "threshold, top_k"),
    ({"threshold": 0.5}, {"threshold": 0.25}, "threshold"),
    ({"adapter": "ad1"}, {"adapter": "ad2"}, "vlm"),
    ({"slide_column": "slide_id"}, {"slide_column": "case"}, "slide_column"),
    ({"description_column": "description"}, {"description_column": "text"}, "description_column"),
], ids=["top-k", "rule", "threshold", "adapter", "slide-column", "description-column"])
def test_a_journal_of_other_settings_starts_over_naming_what_changed(images, tmp_path, monkeypatch, caplog, first,
                                                                     then, changed):
    """Rows journaled under another label-set rule, adapter or table column would mix two settings in one output."""
    _vlm(monkeypatch, tmp_path)
    meta = {"task": "multilabel", "classes": ["A", "B"], "top_k": 1}
    out = tmp_path / "p.jsonl"

    def run(settings, model):
        _use(monkeypatch, model)
        kwargs = dict(settings)
        if "adapter" in kwargs:
            kwargs["vlm"] = "tiny-vlm"
        if "slide_column" in kwargs or "description_column" in kwargs:
            kwargs["descriptions"] = _table(tmp_path, images)
        return predict_to_file(MODEL, [images], out, chunk_size=2, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        run(first, StandIn(meta, stop_at=3))
    model = StandIn(meta)
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.predict"):
        report = run(then, model)
    assert f"another job (changed: {changed})" in caplog.text
    assert report["resumed"] == 0 and model.seen == READABLE


def test_the_inputs_digest_tells_apart_lists_that_join_to_the_same_text(tmp_path):
    """["ab", "c"] and ["a", "bc"] are other inputs (one text each, in order); the descriptions file's digest is
    its bytes' sha256 (None without a file)."""
    assert digest(["ab", "c"]) != digest(["a", "bc"]) and digest(["a", "b"]) != digest(["b", "a"])
    assert digest(["a", "b"]) == digest(["a", "b"])
    table = tmp_path / "t.csv"
    table.write_bytes(b"key,description\nk,some text\n" * 1000)
    assert file_digest(table) == hashlib.sha256(table.read_bytes()).hexdigest() and file_digest(None) is None


def test_a_second_job_into_the_same_output_is_refused_before_the_model_loads(images, tmp_path, monkeypatch):
    loaded = []
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: loaded.append(1) or StandIn())
    with FolderLock(tmp_path / "p.jsonl.resume", "predict"):  # the first job, still running
        with pytest.raises(FolderInUseError, match=r"p\.jsonl\.resume is in use by `predict`"):
            predict_to_file(MODEL, [images], tmp_path / "p.jsonl")
    assert loaded == [] and not (tmp_path / "p.jsonl").exists()
