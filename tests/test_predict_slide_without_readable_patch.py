"""`predict` on slides: a slide whose patches are all unreadable dropped out of `<out>.slides.csv` entirely (only its
patches were listed in the skipped file), so a slide count read from the slides file silently came up short. Now
the slide keeps a row: no patch predicted, no label, and a note saying why."""
from __future__ import annotations

import csv

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run
from mmlnb_dist.predict.slides import multilabel_slide_aggregates

from support.predict_stand_in import StandIn, images_with_a_broken_one


def test_a_slide_of_only_unreadable_patches_keeps_a_row_saying_so(tmp_path, monkeypatch):
    folder = images_with_a_broken_one(tmp_path / "in", ["a1", "a2"])
    table = tmp_path / "t.csv"
    table.write_text("path,description,slide_id\n" + f"{folder}/a1.png,text,S0\n{folder}/a2.png,text,S0\n"
                     f"{folder}/b_broken.png,text,S1\n")
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    report = predict_to_file("models:/stand-in@champion", [folder], tmp_path / "p.csv", descriptions=table)
    with open(report["slides_out"], newline="") as fh:
        slides = {r["slide_id"]: r for r in csv.DictReader(fh)}
    assert set(slides) == {"S0", "S1"}, slides
    assert slides["S0"]["n_patches"] == "2" and slides["S0"]["label_majority"]
    assert slides["S1"]["n_patches"] == "0" and slides["S1"]["label_majority"] == ""
    assert "no readable patch" in slides["S1"]["note"]


def test_multilabel_slides_keep_a_row_for_a_slide_without_rows():
    rows = [{"slide_id": "S0", "prob_a": 0.9, "prob_b": 0.2}]
    got = multilabel_slide_aggregates(rows, ["a", "b"], top_k=1, slides=["S1", "S0", None])
    assert [g["slide_id"] for g in got] == ["S0", "S1"]
    assert got[1]["n_patches"] == 0 and got[1]["labels"] == "" and "no readable patch" in got[1]["note"]
