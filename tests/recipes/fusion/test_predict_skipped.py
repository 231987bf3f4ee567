"""The inputs `predict` could not read are written beside the predictions (`<out stem>.skipped.<ext>`: input,
reason) and named in the summary line: they were only printed on stderr, gone with the terminal or a job log that
was not kept, and the journal that held them is deleted once the output is written. A reason reads the same in
every run: PIL's `<_io.BytesIO object at 0x7fd4...>` is left out."""
from __future__ import annotations

import csv
import json

from mmlnb_dist.cli import main


def test_an_undecodable_image_is_reported_without_a_memory_address(tmp_path):
    from mmlnb_dist.predict.inputs import decoded

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    failed = []
    good, _ = decoded([{"key": "broken", "source": str(tmp_path / "broken.png"), "path": tmp_path / "broken.png"}],
                      failed)
    assert good == [] and len(failed) == 1
    assert failed[0][1].startswith("not a readable image (UnidentifiedImageError: cannot identify image file")
    assert "0x" not in failed[0][1] and "object at" not in failed[0][1]


def _fake_predict(failed):
    """`predict_to_file` as the command sees it: it writes the skipped-inputs file and names it in its report."""
    from mmlnb_dist.predict.skipped import write_skipped

    def predict_to_file(model, inputs, out, **kwargs):
        out.write_text("key,label\nok,UD\n")
        skipped = write_skipped(out, failed)
        return {"predicted": 1, "failed": failed, "out": out, "slides_out": None, "warnings": [], "resumed": 0,
                "agreement": None, "skipped_out": str(skipped) if skipped else None}
    return predict_to_file


def test_skipped_inputs_are_written_beside_the_predictions_and_named_in_the_summary(tmp_path, monkeypatch, capsys):
    import mmlnb_dist.predict as predict

    failed = [("in/broken.png", "not a readable image (UnidentifiedImageError: cannot identify image file)"),
              ("in/gone.png", "no such file or folder")]
    monkeypatch.setattr(predict, "predict_to_file", _fake_predict(failed))
    out = tmp_path / "preds.csv"
    assert main(["predict", "--model", "models:/m@champion", "in", "--out", str(out)]) == 1
    skipped = tmp_path / "preds.skipped.csv"
    with open(skipped, newline="") as fh:
        assert [(r["input"], r["reason"]) for r in csv.DictReader(fh)] == failed
    assert str(skipped) in capsys.readouterr().err

    monkeypatch.setattr(predict, "predict_to_file", _fake_predict(failed[:1]))
    jsonl = tmp_path / "preds.jsonl"
    assert main(["predict", "--model", "models:/m@champion", "in", "--out", str(jsonl)]) == 1
    lines = (tmp_path / "preds.skipped.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"input": failed[0][0], "reason": failed[0][1]}]


def test_a_run_that_skips_nothing_leaves_no_skipped_file_of_an_earlier_run(tmp_path, monkeypatch):
    import mmlnb_dist.predict as predict

    (tmp_path / "preds.skipped.csv").write_text("input,reason\nold.png,from an earlier run\n")
    monkeypatch.setattr(predict, "predict_to_file", _fake_predict([]))
    assert main(["predict", "--model", "models:/m@champion", "in", "--out", str(tmp_path / "preds.csv")]) == 0
    assert not (tmp_path / "preds.skipped.csv").exists()


def test_predict_to_file_itself_keeps_the_unreadable_inputs(tmp_path, monkeypatch):
    """The library call (not only the command) leaves the list beside the predictions: a notebook or the pipeline
    calling `predict_to_file` loses nothing either."""
    from mmlnb_dist.predict import predict_to_file
    from mmlnb_dist.predict import run as predict_run
    from support.predict_stand_in import StandIn, images_with_a_broken_one

    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    images = images_with_a_broken_one(tmp_path / "in", ["a", "c"])
    report = predict_to_file("models:/stand-in@champion", [images], tmp_path / "p.csv")
    skipped = tmp_path / "p.skipped.csv"
    assert report["skipped_out"] == str(skipped)
    with open(skipped, newline="") as fh:
        assert [(r["input"], r["reason"][:20]) for r in csv.DictReader(fh)] == \
            [(item, reason[:20]) for item, reason in report["failed"]]
    assert len(report["failed"]) == 1 and report["failed"][0][0].endswith("b_broken.png")
