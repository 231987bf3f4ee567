"""`predict`'s summary line names the predictions file and, beside it, `<out>.model.json`, which records the
model that wrote them (a rerun with another model warns naming both): nothing on the console said the file was
there, so a user reading the line could not know which file tells whose predictions these are."""
from __future__ import annotations

from support.cli import run_cli
from support.predict_stand_in import StandIn, images_with_a_broken_one

from mmlnb_dist.predict import run as predict_run


def test_the_summary_line_names_the_model_record_beside_the_predictions(tmp_path, monkeypatch):
    folder = images_with_a_broken_one(tmp_path / "in", ["a", "c"])
    out = tmp_path / "p.csv"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    code, printed, err = run_cli(["predict", "--model", "models:/stand-in@champion", str(folder), "--out", str(out)])
    assert code == 1, err  # b_broken.png is unreadable
    summary = [line for line in printed.splitlines() if "prediction(s) ->" in line]
    assert len(summary) == 1, printed
    assert f"2 prediction(s) -> {out}" in summary[0], summary
    assert f"model record -> {tmp_path / 'p.csv.model.json'}" in summary[0], summary
    assert (tmp_path / "p.csv.model.json").is_file()
