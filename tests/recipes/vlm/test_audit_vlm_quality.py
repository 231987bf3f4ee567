"""Mutation audit of the description quality report (recipes/vlm/quality.py) on samples given directly: the median of
an odd count is its middle value, an empty reference is no reference, samples without a class are left out of the
class-naming rate, and the splits are reported in a fixed order."""
from __future__ import annotations

import json
import types

import pytest

from mmlnb_dist.recipes.vlm import quality as Q

KEYWORDS = {"UD": ["sheets"], "PD": ["nests"], "D": ["ganglion"]}
CLASSES = ["UD", "PD", "D"]


def _report(monkeypatch, rows, keywords=None):
    """rows: (split, text, class index or None, reference or None); one shard per split, in the order given."""
    splits = list(dict.fromkeys(r[0] for r in rows))
    samples = {}
    for split, text, cls, ref in rows:
        sample = {"txt": text.encode("utf-8")}
        if cls is not None:
            sample["cls"] = str(cls).encode()
        if ref is not None:
            sample["json"] = json.dumps({"reference_description": ref}).encode()
        samples.setdefault(f"{split}.tar", []).append(sample)

    class Root:  # root / file: the shard's name, the key of its samples here
        def __truediv__(self, name):
            return name

    shards = types.SimpleNamespace(root=Root(), classes=CLASSES,
                                   entries=lambda: [(s, None, {"file": f"{s}.tar"}) for s in splits])
    monkeypatch.setattr(Q, "iter_shard_samples", lambda path: iter(samples[path]))
    return Q.quality_report(shards, keywords)


def test_the_median_of_three_descriptions_is_the_middle_one(monkeypatch):
    report = _report(monkeypatch, [("train", "a", 0, None), ("train", "a b", 0, None), ("train", "a b c", 0, None)])
    assert (report["words"]["min"], report["words"]["p50"], report["words"]["max"]) == (1.0, 2.0, 3.0)
    assert report["words"]["mean"] == pytest.approx(2.0)


def test_an_empty_reference_is_not_scored(monkeypatch):
    rows = [("train", "sheets of cells", 0, "sheets of cells"), ("train", "nests", 1, ""),
            ("train", "ganglion", 2, None)]
    report = _report(monkeypatch, rows)
    assert report["reference"]["n"] == 1 and report["reference"]["rouge_l"] == pytest.approx(1.0)


def test_unlabelled_descriptions_are_left_out_of_the_class_naming_rate_and_splits_come_sorted(monkeypatch):
    rows = [("val", "sheets", 0, None), ("val", "nests", 0, None), ("train", "ganglion", 2, None),
            ("test", "sheets", None, None), ("test", "nests", 1, None)]
    report = _report(monkeypatch, rows, KEYWORDS)
    naming = report["class_naming"]
    assert naming["rate"] == pytest.approx(3 / 4)
    assert list(naming["by_split"]) == ["test", "train", "val"]
    assert naming["by_split"] == {"test": 1.0, "train": 1.0, "val": 0.5}
    assert "names its class: 0.75 (test 1.00, train 1.00, val 0.50)" in Q.format_report(report)
    unlabelled = _report(monkeypatch, [("test", "sheets", None, None)], KEYWORDS)
    assert unlabelled["class_naming"] is None and unlabelled["n"] == 1
