"""A shard of a shard set given to `predict` on its own (`val-000000.tar`, or one sample `<tar>:<key>`) carries
who wrote its descriptions as the whole set given does (its manifest, beside it): the samples' writer was unknown,
so a model trained on VLM text fed the set's reference text was predicted without the warning the folder gets."""
from __future__ import annotations

import pytest

from mmlnb_dist.predict import collect_inputs, predict_to_file
from mmlnb_dist.predict import run as predict_run
from support.fusion import make_shards
from support.predict_stand_in import StandIn

VLM = {"model": "tiny", "adapter_sha256": None}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return make_shards(tmp_path_factory.mktemp("s"), n=12, size=16)  # reference descriptions


def test_a_shard_given_alone_carries_its_set_s_writer(shards):
    tar = sorted(shards.glob("val-*.tar"))[0]
    whole, _ = collect_inputs([shards], "val")
    alone, _ = collect_inputs([tar])
    member, _ = collect_inputs([f"{tar}:{alone[0]['sample_key']}"])
    assert {it["written_by"] for it in whole} == {"reference"}
    assert [it["written_by"] for it in alone] == ["reference"] * len(alone)
    assert member[0]["written_by"] == "reference"


def test_a_shard_given_alone_is_warned_about_as_its_set_is(shards, tmp_path, monkeypatch):
    model = StandIn({"reads_text": True, "descriptions_written_by": VLM})
    monkeypatch.setattr(predict_run, "load_model", lambda *a, **k: model)
    tar = sorted(shards.glob("val-*.tar"))[0]
    report = predict_to_file("m", [tar], tmp_path / "p.csv")
    assert report["predicted"] > 0 and len(report["warnings"]) == 1
    assert "from the shard set itself" in report["warnings"][0]
