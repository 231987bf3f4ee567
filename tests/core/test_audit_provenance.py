"""Mutation-audit guards of `mmlnb_dist.core.provenance`: what an output records of the settings that made it, and
continuing it refused on any difference outside the allowlist (a key added, removed or emptied counts; a tuple and
the list JSON gives back do not), allowed changes kept in its history."""
from __future__ import annotations

import json

import pytest

from mmlnb_dist.core.provenance import MISSING, ProvenanceError, check_or_record, differences


def test_a_key_on_one_side_only_or_an_emptied_section_is_a_difference():
    assert differences({"a": 1}, {"a": 1, "b": 2}) == [("b", MISSING, 2)]
    assert differences({"a": 1, "b": 2}, {"a": 1}) == [("b", 2, MISSING)]
    assert differences({"lora": {"r": 8}}, {"lora": {}}) == [("lora", MISSING, {}), ("lora.r", 8, MISSING)]
    assert differences({"gen": {"top_p": 0.9}}, {"gen": {"top_p": 0.9}}) == []


def test_continuing_an_output_is_refused_on_a_change_outside_the_allowlist(tmp_path):
    path = tmp_path / "provenance.json"
    record = {"model": "tiny", "tracking": {"uri": "a"}, "sizes": (1, 2)}
    assert check_or_record(path, record, what="describe output") == []
    assert json.loads(path.read_text())["record"]["model"] == "tiny"
    assert check_or_record(path, record, what="describe output") == []  # a tuple matches the list JSON gave back
    with pytest.raises(ProvenanceError, match=r"model: 'tiny' -> 'big'"):
        check_or_record(path, {**record, "model": "big"}, what="describe output", allow=["tracking.*"])
    with pytest.raises(ProvenanceError, match=r"extra: '<absent>' -> 1"):
        check_or_record(path, {**record, "extra": 1}, what="describe output")


def test_an_allowed_change_is_recorded_once_in_the_history_and_becomes_the_record(tmp_path):
    path = tmp_path / "provenance.json"
    check_or_record(path, {"model": "tiny", "tracking": {"uri": "a"}}, what="x")
    moved = {"model": "tiny", "tracking": {"uri": "b"}}
    assert check_or_record(path, moved, what="x", allow=["tracking.*"]) == [("tracking.uri", "a", "b")]
    assert check_or_record(path, moved, what="x", allow=["tracking.*"]) == []  # the record moved with it
    stored = json.loads(path.read_text())
    assert stored["record"] == moved and [c["changed"] for c in stored["changes"]] == [{"tracking.uri": ["a", "b"]}]
    with pytest.raises(ProvenanceError):
        check_or_record(path, {"model": "tiny", "tracking": {"uri": "a"}}, what="x", allow=["tracking.url"])
