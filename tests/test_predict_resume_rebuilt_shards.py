"""A `predict` over a shard set, killed, then run again after the set was rebuilt in place (same folder, other
images under the same keys): the journal's job named the inputs, not their contents, so the rerun kept the old
build's rows and the output mixed two builds. The job now holds each shard set's manifest digest: a rebuilt set
starts the job from the first input, with the warning of another job, and no row of the old build is kept."""
from __future__ import annotations

import json
import logging

import pytest

from mmlnb_dist.predict import predict_to_file
from mmlnb_dist.predict import run as predict_run

from support.fusion import make_shards
from support.predict_stand_in import StandIn

MODEL = "models:/stand-in@champion"


def _rows(out):
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_a_shard_set_rebuilt_between_kill_and_rerun_starts_the_job_afresh(tmp_path, monkeypatch, caplog):
    shards = make_shards(tmp_path / "build", n=24, size=16, seed=0)
    out = tmp_path / "p.jsonl"
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn(stop_at=2))
    with pytest.raises(KeyboardInterrupt):  # killed after its first chunk is journaled
        predict_to_file(MODEL, [shards], out, chunk_size=4)
    assert (out.with_name(out.name + ".resume") / "journal.jsonl").is_file()

    make_shards(tmp_path / "build", n=24, size=20, seed=0)  # rebuilt in place: same keys, other images
    whole = tmp_path / "whole.jsonl"
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: StandIn())
    predict_to_file(MODEL, [shards], whole, chunk_size=4)

    model = StandIn()
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: model)
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.predict"):
        report = predict_to_file(MODEL, [shards], out, chunk_size=4)
    assert report["resumed"] == 0 and len(model.seen) == report["predicted"]
    assert _rows(out) == _rows(whole)
    assert any("another job" in r.getMessage() and "shard_sets" in r.getMessage() for r in caplog.records), \
        caplog.text
