"""Mutation audit of `data.text_writer`: who wrote a shard set's descriptions, when two writers write alike (the
adapter decides over the model's name; reference text only matches reference text), and which inputs are warned
about."""
from __future__ import annotations

from mmlnb_dist.data.text_writer import REFERENCE, same_writer, shard_text_writer, text_writer_warnings, trained_writer

TINY = {"model": "tiny", "adapter_sha256": None}
A, C = "ab" * 32, "cd" * 32


def test_writers_compare_by_adapter_first_then_by_model():
    assert same_writer(REFERENCE, REFERENCE)
    assert not same_writer(REFERENCE, TINY) and not same_writer(TINY, REFERENCE)
    assert same_writer(TINY, {"model": "tiny"})
    assert not same_writer(TINY, {"model": "other", "adapter_sha256": None})
    assert same_writer({"model": "base-a", "adapter_sha256": A}, {"model": "merged", "adapter_sha256": A})
    assert not same_writer({"model": "tiny", "adapter_sha256": A}, {"model": "tiny", "adapter_sha256": C})
    assert not same_writer({"model": "tiny", "adapter_sha256": A}, TINY)


def test_shard_and_model_writers_default_to_reference_text():
    assert shard_text_writer({"provenance": {}}) == REFERENCE
    assert shard_text_writer({}) == REFERENCE
    made = {"provenance": {"describe": {"model": "tiny", "adapter_sha256": A, "prompt": "x"}}}
    assert shard_text_writer(made) == {"model": "tiny", "adapter_sha256": A}
    assert trained_writer({}) is None  # a model from before the record: nothing to compare
    assert trained_writer({"descriptions_written_by": None}) == REFERENCE
    assert trained_writer({"descriptions_written_by": TINY}) == TINY


def test_warnings_count_inputs_per_other_writer_and_skip_unknown_ones():
    meta = {"reads_text": True, "descriptions_written_by": None}  # trained on reference text
    items = [{"written_by": TINY}, {"written_by": TINY}, {"written_by": REFERENCE}, {"written_by": None}, {}]
    lines = text_writer_warnings("models:/m/1", meta, items)
    assert len(lines) == 1 and "2 of 5 images here" in lines[0] and "tiny" in lines[0]
    assert text_writer_warnings("models:/m/1", {**meta, "reads_text": False}, items) == []
    assert text_writer_warnings("models:/m/1", {"reads_text": True}, items) == []
    vlm = {"reads_text": True, "descriptions_written_by": TINY}
    lines = text_writer_warnings("models:/m/1", vlm, items)
    assert len(lines) == 1 and "1 of 5 images here" in lines[0] and "--vlm tiny" in lines[0]


def test_two_tiny_models_of_other_seeds_or_towers_are_other_writers():
    # `tiny` names a random model built from vlm.tiny_seed and vlm.tiny_vision: the name alone is not the writer
    seed0 = {"model": "tiny", "adapter_sha256": None, "tiny_seed": 0, "tiny_vision": "random"}
    assert not same_writer(seed0, {**seed0, "tiny_seed": 1})
    assert not same_writer(seed0, {**seed0, "tiny_vision": "pretrained"})
    assert same_writer(seed0, dict(seed0))
    assert same_writer(seed0, TINY)  # a writer recorded without them (older records): not judged on them
    made = {"provenance": {"describe": {"model": "tiny", "adapter_sha256": None, "tiny_seed": 1, "tiny_vision": "random"}}}
    assert not same_writer(shard_text_writer(made), seed0)
