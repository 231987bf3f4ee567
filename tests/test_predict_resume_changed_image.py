"""A `predict` over image files, killed, then run again after an image it had already predicted was overwritten in
place (same name, other pixels): the journal's job named the files by path only, so the rerun kept the old image's
row and the output mixed two versions of the inputs. Each image file is now known by its path, size and mtime_ns
(what rsync and make compare): a changed file starts the job from the first input, with the warning of another job
naming what changed, and the output is what one run over the new files writes."""
from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run

from support.predict_stand_in import StandIn, images_with_a_broken_one

MODEL = "models:/stand-in@champion"
READABLE = ["a", "c", "d", "e"]


def _rows(out):
    return [json.loads(line) for line in out.read_text().splitlines()]


def _use(monkeypatch, model):
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: model)
    return model


def _overwrite(png):
    """Other pixels (and another size on disk) under the same name."""
    Image.fromarray(np.full((30, 17, 3), 200, dtype=np.uint8)).save(png)


def _touch_later(png):
    """The same bytes rewritten, as a copy over it would leave them: only the mtime tells."""
    st = png.stat()
    png.write_bytes(png.read_bytes())
    os.utime(png, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


@pytest.mark.parametrize("change", [_overwrite, _touch_later], ids=["overwritten", "rewritten-later"])
def test_an_image_changed_between_kill_and_rerun_starts_the_job_afresh(tmp_path, monkeypatch, caplog, change):
    images = images_with_a_broken_one(tmp_path / "in", READABLE)
    out = tmp_path / "p.jsonl"
    _use(monkeypatch, StandIn(stop_at=2))
    with pytest.raises(KeyboardInterrupt):  # killed after its first chunk (a.png, b_broken.png) is journaled
        predict_to_file(MODEL, [images], out, chunk_size=2)
    assert (out.with_name(out.name + ".resume") / "journal.jsonl").is_file()

    change(images / "a.png")  # already predicted by the killed run
    whole = tmp_path / "whole.jsonl"
    _use(monkeypatch, StandIn())
    predict_to_file(MODEL, [images], whole, chunk_size=2)

    model = _use(monkeypatch, StandIn())
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.predict"):
        report = predict_to_file(MODEL, [images], out, chunk_size=2)
    assert report["resumed"] == 0 and model.seen == READABLE
    assert _rows(out) == _rows(whole)
    assert any("another job" in r.getMessage() and "files" in r.getMessage() for r in caplog.records), caplog.text


def test_unchanged_image_files_still_resume(tmp_path, monkeypatch):
    """The files' identity is stable across runs: an untouched folder resumes after the journaled chunk."""
    images = images_with_a_broken_one(tmp_path / "in", READABLE)
    out = tmp_path / "p.jsonl"
    _use(monkeypatch, StandIn(stop_at=2))
    with pytest.raises(KeyboardInterrupt):
        predict_to_file(MODEL, [images], out, chunk_size=2)
    model = _use(monkeypatch, StandIn())
    report = predict_to_file(MODEL, [images], out, chunk_size=2)
    assert report["resumed"] == 2 and model.seen == ["c", "d", "e"]
