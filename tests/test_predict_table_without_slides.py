"""A `--descriptions` table gives the images their slide ids; an image without a row in it (or with an empty slide
cell) was predicted without one and left out of the per-slide aggregates without a word: a slide's mean and vote
then came from fewer patches than the user gave, and nothing said so. Now a warning counts them and names the
first (a model that reads no text, where a missing row refuses nothing)."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run

from support.predict_stand_in import StandIn


def test_images_the_table_gives_no_slide_are_counted_and_named(tmp_path, monkeypatch, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate("abcd"):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{name}.png")
    table = tmp_path / "slides.csv"
    # c.png: no row; d.png: no slide
    table.write_text("path,description,slide_id\nin/a.png,x,s1\nin/b.png,x,s1\nin/d.png,x,\n")
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.predict"):
        report = predict_to_file("models:/stand-in@champion", [folder], tmp_path / "p.csv", descriptions=table,
                                 slide_column="slide_id")
    assert report["predicted"] == 4
    assert pd.read_csv(report["slides_out"])[["slide_id", "n_patches"]].values.tolist() == [["s1", 2]]
    warned = [r.getMessage() for r in caplog.records if "slide id" in r.getMessage()]
    assert len(warned) == 1 and "2 of 4" in warned[0] and str(folder / "c.png") in warned[0], caplog.text
    assert str(table) in warned[0], warned


@pytest.mark.parametrize("table_text", [
    "path,description,slide_id\nin/a.png,x,s1\nin/b.png,x,s2\n",  # every image has its slide
    "path,description\nin/a.png,x\nin/b.png,y\n",  # a table of descriptions only: no slides asked for
], ids=["every-image-has-its-slide", "no-slides-at-all"])
def test_no_warning_when_no_image_is_left_out_of_the_slides(tmp_path, monkeypatch, caplog, table_text):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in "ab":
        Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(folder / f"{name}.png")
    table = tmp_path / "table.csv"
    table.write_text(table_text)
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.predict"):
        predict_to_file("models:/stand-in@champion", [folder], tmp_path / "p.csv", descriptions=table)
    assert not [r for r in caplog.records if "slide id" in r.getMessage()], caplog.text
