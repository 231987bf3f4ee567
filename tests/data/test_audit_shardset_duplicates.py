"""Audit of `ShardSet.open`'s refusals and defaults and of `data.duplicates`: a manifest without splits, a split
without its shard list or a manifest that is not UTF-8 is one `ShardError` naming the file; old manifests read as
single-label without descriptions; a derived manifest counts every class (0 included); and the copies report lists
only copies that span splits or labels (labels of a multi-label build are not compared), in a stable order, with
the warning's examples cut at three and a folder that is no shard set left to whoever reads it next."""
from __future__ import annotations

import hashlib
import json
import logging

import pytest

from mmlnb_dist.data.duplicates import DuplicateFinder, image_digest, warn_duplicates, warn_held_out_copies
from mmlnb_dist.data.shardset import ShardError, ShardSet, updated_manifest

BASE = {"format": "mmlnb-shards/1", "classes": ["a", "b"]}


def _write(root, manifest):
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.mark.parametrize("manifest, message", [
    (dict(BASE), "missing field 'splits'"),
    ({**BASE, "splits": {"train": {"num_samples": 3}}}, "split 'train' lacks 'shards' or 'num_samples'"),
    ({**BASE, "splits": {"train": ["t.tar"]}}, "split 'train' lacks"),
])
def test_a_manifest_without_its_splits_is_refused_naming_the_file(tmp_path, manifest, message):
    root = _write(tmp_path / "s", manifest)
    with pytest.raises(ShardError, match=message) as err:
        ShardSet.open(root)
    assert str(root / "manifest.json") in str(err.value)


def test_a_manifest_that_is_not_utf8_is_not_valid_json(tmp_path):
    (tmp_path / "manifest.json").write_bytes(b'{"format": "\xff\xfe"}')
    with pytest.raises(ShardError, match="is not valid JSON"):
        ShardSet.open(tmp_path)


def test_an_old_manifest_reads_as_single_label_without_descriptions(tmp_path):
    s = ShardSet.open(_write(tmp_path / "s", {**BASE, "splits": {"train": {"shards": [], "num_samples": 0}}}))
    assert s.task == "single" and s.has_descriptions is False and s.provenance == {}
    assert s.num_samples("val") == 0 and s.copies_of_train() == {}
    spec = s.dataset_specs()[0]
    assert spec["digest"] == hashlib.sha256((tmp_path / "s" / "manifest.json").read_bytes()).hexdigest()[:16]
    assert spec["name"] == "s:train" and spec["context"] == "train"


def test_a_derived_manifest_counts_every_class_even_with_no_sample():
    base = {**BASE, "splits": {"val": {"shards": [{"file": "v0"}], "num_samples": 2, "class_counts": {"a": 1}}}}
    new = updated_manifest(base, {("val", 0): {"file": "v0", "num_samples": 1, "class_counts": {"a": 1}}})
    assert new["splits"]["val"]["class_counts"] == {"a": 1, "b": 0}


def _finder(members):
    finder = DuplicateFinder()
    for digest, split, key, label in members:
        finder.add(digest, split, key, label)
    return finder


def test_only_copies_across_splits_or_labels_are_reported_and_multilabel_labels_are_not_compared():
    finder = _finder([("d1", "val", "k2", "a"), ("d1", "train", "k1", "a"),   # across splits
                      ("d2", "train", "k3", "a"), ("d2", "train", "k4", "b"),  # one split, two labels
                      ("d3", "train", "k5", "a"), ("d3", "train", "k6", "a"),  # one split, one label: a caption set
                      ("d4", "test", "k7", "b")])                              # no copy
    single = finder.report(multilabel=False)
    assert single["across_splits"] == [[{"split": "train", "key": "k1", "label": "a"},
                                        {"split": "val", "key": "k2", "label": "a"}]]
    assert single["conflicting_labels"] == [[{"split": "train", "key": "k3", "label": "a"},
                                             {"split": "train", "key": "k4", "label": "b"}]]
    multi = finder.report(multilabel=True)
    assert multi["across_splits"] == single["across_splits"] and multi["conflicting_labels"] == []


def test_copy_groups_are_listed_in_a_stable_order_whatever_the_order_they_were_found():
    members = [(f"d{i}", split, f"{split}{i}", "a") for i in range(4) for split in ("val", "train")]
    forward = _finder(members).report(False)["across_splits"]
    backward = _finder(members[::-1]).report(False)["across_splits"]
    assert forward == backward
    assert [g[0]["key"] for g in forward] == ["train0", "train1", "train2", "train3"]


def test_the_warning_shows_three_examples_and_says_there_are_more(caplog):
    groups = [[{"split": "train", "key": f"t{i}", "label": "a"}, {"split": "val", "key": f"v{i}", "label": "a"}]
              for i in range(4)]
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.data.duplicates"):
        warn_duplicates({"across_splits": groups, "conflicting_labels": []}, "shards/x")
    assert len(caplog.records) == 1
    text = caplog.records[0].getMessage()
    assert "4 image(s) in more than one split of shards/x" in text
    assert "train/t2 (a)=val/v2 (a); ..." in text and "t3" not in text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.data.duplicates"):
        warn_duplicates({"across_splits": groups[:3], "conflicting_labels": []}, "shards/x")
    assert "..." not in caplog.records[0].getMessage()


def test_held_out_copies_warn_for_their_split_only_and_a_folder_that_is_no_shard_set_is_silent(tmp_path, caplog):
    group = [{"split": "train", "key": "k1", "label": "a"}, {"split": "test", "key": "k2", "label": "a"}]
    root = _write(tmp_path / "s", {**BASE, "splits": {}, "duplicates": {"across_splits": [group]}})
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.data.duplicates"):
        warn_held_out_copies(root, "val")
        warn_held_out_copies(tmp_path / "nothing", "test")
        assert caplog.records == []
        warn_held_out_copies(root, "test")
    assert len(caplog.records) == 1 and "1 test sample(s)" in caplog.records[0].getMessage()


def test_the_digest_is_of_every_byte():
    data = bytes(range(256)) * 4
    assert image_digest(data) != image_digest(data[:-1] + b"\x00") and len(image_digest(data)) == 16
