"""An interrupted `predict` resumes after its last finished chunk. A `predict --vlm` over a slide set runs for hours
(the VLM writes every description); killed at 90% it started again from the first image, and two jobs into one
output both wrote it. Now each chunk is journaled in `<out>.resume/`, the same command predicts only what is left
and writes what one uninterrupted run writes, and a second job into that output is refused."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from mmlnb_dist.cli import main

from support.fusion import registered_model

MODEL = "models:/nb-resume@champion"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    t = registered_model(tmp_path_factory.mktemp("resume"), "nb-resume")
    assert t["n_val"] >= 7, t["n_val"]  # enough for 3 chunks of 2 and more
    return t


class Spy:
    """Counts what the model predicts and the VLM describes; stops the job (as Ctrl-C does) at the model's
    `stop_at`-th call."""

    def __init__(self, monkeypatch):
        from mmlnb_dist.predict import run as predict_run

        self.predicted, self.described, self.calls, self.stop_at = 0, 0, 0, None
        load, make_describer = predict_run.load_model, predict_run._vlm_describer

        def spying_load(*args, **kwargs):
            model = load(*args, **kwargs)
            real = model.predict

            def predict(data, params=None):
                self.calls += 1
                if self.calls == self.stop_at:
                    raise KeyboardInterrupt
                self.predicted += len(data)
                return real(data, params=params)

            model.predict = predict
            return model

        def spying_describer(*args):
            describe = make_describer(*args)

            def counted(images):
                self.described += len(images)
                return describe(images)

            return counted

        monkeypatch.setattr(predict_run, "load_model", spying_load)
        monkeypatch.setattr(predict_run, "_vlm_describer", spying_describer)

    def reset(self, stop_at=None):
        self.predicted, self.described, self.calls, self.stop_at = 0, 0, 0, stop_at


def _predict(t, out: Path, split="val", **kwargs):
    from mmlnb_dist.predict import predict_to_file

    return predict_to_file(MODEL, [t["shards"]], out, split=split, tracking_uri=t["uri"], chunk_size=2, **kwargs)


def _same_files(a: Path, b: Path):
    for name in ("{}.csv", "{}.slides.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(a.parent / name.format(a.stem)),
                                      pd.read_csv(b.parent / name.format(b.stem)))


def test_a_killed_vlm_predict_resumes_after_its_last_chunk_and_writes_what_one_run_writes(trained, tmp_path,
                                                                                          monkeypatch):
    spy, n = Spy(monkeypatch), trained["n_val"]
    whole = _predict(trained, tmp_path / "whole.csv", vlm="tiny")
    assert whole["predicted"] == spy.predicted == spy.described == n and whole["resumed"] == 0

    out = tmp_path / "preds.csv"
    spy.reset(stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        _predict(trained, out, vlm="tiny")
    journal = tmp_path / "preds.csv.resume" / "journal.jsonl"
    assert not out.exists() and journal.is_file()
    with open(journal, "a") as fh:  # a kill while the third chunk's line was being written
        fh.write('{"upto": 6, "rows": [{"key": "')

    spy.reset(stop_at=2)  # the resume is killed too, after one more chunk: it follows the kept chunks, not the cut
    with pytest.raises(KeyboardInterrupt):
        _predict(trained, out, vlm="tiny")
    assert spy.predicted == 2
    assert [r.get("upto") for r in map(json.loads, journal.read_text().splitlines())] == [None, 2, 4, 6]

    spy.reset()
    resumed = _predict(trained, out, vlm="tiny")
    assert resumed["resumed"] == 6 and resumed["predicted"] == n
    assert spy.predicted == spy.described == n - 6  # only what the killed runs had not finished
    assert not journal.parent.exists()
    _same_files(out, tmp_path / "whole.csv")
    assert resumed["warnings"] == whole["warnings"]


def test_the_journal_of_another_job_is_dropped_with_what_changed(trained, tmp_path, monkeypatch, caplog):
    spy, out = Spy(monkeypatch), tmp_path / "preds.csv"
    spy.stop_at = 2
    with pytest.raises(KeyboardInterrupt):
        _predict(trained, out, split="train")
    spy.reset()
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.predict"):
        report = _predict(trained, out)  # the val split now: another job
    assert "holds an interrupted predict of another job (changed: inputs, n_inputs, split)" in caplog.text
    assert report["resumed"] == 0 and spy.predicted == report["predicted"] == trained["n_val"]
    _predict(trained, tmp_path / "plain.csv")
    _same_files(out, tmp_path / "plain.csv")


def test_a_journal_of_other_descriptions_is_dropped(trained, tmp_path, monkeypatch, caplog):
    """A description edited in the `--descriptions` table between the kill and the resume is another job: without
    this, the resume keeps the chunks predicted from the old text and the user gets predictions of words no longer
    in the table, with no word said."""
    from mmlnb_dist.data.reader import iter_shard_samples
    from mmlnb_dist.data.shardset import ShardSet

    shards = trained["shards"]
    texts = {s["__key__"]: s["txt"].decode() for e in ShardSet.open(shards).manifest["splits"]["val"]["shards"]
             for s in iter_shard_samples(shards / e["file"])}
    table = pd.DataFrame({"key": list(texts), "description": list(texts.values())})
    descriptions = tmp_path / "descriptions.csv"
    table.to_csv(descriptions, index=False)

    spy, out = Spy(monkeypatch), tmp_path / "preds.csv"
    spy.stop_at = 2  # killed after the first chunk
    with pytest.raises(KeyboardInterrupt):
        _predict(trained, out, descriptions=descriptions)
    journal = tmp_path / "preds.csv.resume" / "journal.jsonl"
    first = json.loads(journal.read_text().splitlines()[1])["rows"][0]["key"]
    table.loc[table.key == first, "description"] = "no tumour cells, only stroma and blood"
    table.to_csv(descriptions, index=False)  # the first chunk's text is edited

    spy.reset()
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.predict"):
        report = _predict(trained, out, descriptions=descriptions)
    assert "holds an interrupted predict of another job (changed: descriptions)" in caplog.text
    assert report["resumed"] == 0 and spy.predicted == report["predicted"] == trained["n_val"]
    _predict(trained, tmp_path / "fresh.csv", descriptions=descriptions)
    _same_files(out, tmp_path / "fresh.csv")


def test_a_second_predict_into_the_same_output_is_refused_while_the_first_runs(trained, tmp_path, capsys):
    from mmlnb_dist.core.runlock import FolderLock

    out = tmp_path / "preds.csv"
    with FolderLock(tmp_path / "preds.csv.resume", "predict"):  # the first job, still running
        code = main(["predict", "--model", MODEL, str(trained["shards"]), "--split", "val", "--out", str(out),
                     "--uri", trained["uri"]])
    assert code == 2 and not out.exists()
    assert "preds.csv.resume is in use by `predict` (pid" in capsys.readouterr().err


def test_a_failed_write_is_finished_from_the_journal_without_predicting_again(trained, tmp_path, monkeypatch):
    import csv

    spy, out = Spy(monkeypatch), tmp_path / "preds.csv"
    real = csv.DictWriter.writerows

    def disk_full(self, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _predict(trained, out)
    monkeypatch.setattr(csv.DictWriter, "writerows", real)
    spy.reset()
    report = _predict(trained, out)
    assert report["resumed"] == report["predicted"] == trained["n_val"] and spy.calls == 0
    _predict(trained, tmp_path / "plain.csv")
    _same_files(out, tmp_path / "plain.csv")


def test_a_vlm_predict_resumed_with_other_vlm_settings_starts_over(trained, tmp_path, monkeypatch, caplog):
    """The VLM's settings (prompt, decoding, image size from `--config`) are part of the job: a resume under another
    prompt kept the killed run's descriptions and wrote the rest under the new one, two kinds of text in one file."""
    from mmlnb_dist.config import load_config

    spy, out = Spy(monkeypatch), tmp_path / "preds.csv"
    first = load_config(None, ["vlm.prompt=Describe the tissue."])
    spy.stop_at = 3
    with pytest.raises(KeyboardInterrupt):
        _predict(trained, out, vlm="tiny", vlm_config=first)
    spy.reset()
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.predict"):
        report = _predict(trained, out, vlm="tiny", vlm_config=load_config(None, ["vlm.prompt=Name the subtype."]))
    assert "holds an interrupted predict of another job (changed: vlm)" in caplog.text
    assert report["resumed"] == 0 and spy.described == report["predicted"] == trained["n_val"]

    spy.reset(stop_at=3)  # the same settings again: the resume goes on after the killed run's chunks
    with pytest.raises(KeyboardInterrupt):
        _predict(trained, tmp_path / "again.csv", vlm="tiny", vlm_config=first)
    spy.reset()
    assert _predict(trained, tmp_path / "again.csv", vlm="tiny", vlm_config=first)["resumed"] == 4
