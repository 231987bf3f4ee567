"""Audit of `data.synthetic`: the exact noisy and ambiguous counts the docstring promises (rounded to nearest, not
truncated), the argument limits, where ambiguous patches take their morphology from, and the descriptions'
wording."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from mmlnb_dist.data.synthetic import (CLASSES, _PHRASES, describe_label, make_synthetic_dataset, names_class,
                                       noisy_description)


def _rows(root):
    rows = list(csv.DictReader(open(root / "labels.csv")))
    descs = {d["file"]: d["description"] for d in map(json.loads, open(root / "descriptions.jsonl"))}
    return rows, descs


def test_noisy_descriptions_are_rounded_to_nearest(tmp_path):
    """n=9 at rate 0.3 is 2.7 noisy descriptions: exactly 3 are noisy (none names its class), the 6 others do."""
    summary = make_synthetic_dataset(tmp_path, n=9, size=16, n_slides=3, noisy_description_rate=0.3, seed=0)
    rows, descs = _rows(tmp_path)
    noisy = [r["file"] for r in rows if not names_class(descs[r["file"]], r["label"])]
    assert summary["noisy_descriptions"] == 3 and len(noisy) == 3


def test_ambiguous_patches_are_rounded_to_nearest_and_rate_one_is_allowed(tmp_path):
    assert make_synthetic_dataset(tmp_path / "a", n=9, size=16, n_slides=3, noisy_description_rate=0.0,
                                  ambiguous_rate=0.3)["ambiguous_patches"] == 3
    assert make_synthetic_dataset(tmp_path / "b", n=6, size=16, n_slides=3, noisy_description_rate=0.0,
                                  ambiguous_rate=1.0)["ambiguous_patches"] == 6
    with pytest.raises(ValueError, match="ambiguous_rate"):
        make_synthetic_dataset(tmp_path / "c", n=6, size=16, n_slides=3, ambiguous_rate=1.01)


def test_ambiguous_patches_are_painted_as_any_class_and_keep_their_label_and_description(tmp_path):
    """Every patch ambiguous: each label has patches painted as its own class (the same bytes as the plain set) and
    patches painted as another; the labels are the plain set's and every description still names its label."""
    kw = dict(n=30, size=16, n_slides=3, noisy_description_rate=0.0, seed=3)
    make_synthetic_dataset(tmp_path / "plain", **kw)
    make_synthetic_dataset(tmp_path / "amb", ambiguous_rate=1.0, **kw)
    (plain_rows, _), (rows, descs) = _rows(tmp_path / "plain"), _rows(tmp_path / "amb")
    assert rows == plain_rows and all(names_class(descs[r["file"]], r["label"]) for r in rows)
    same = {c: [] for c in CLASSES}
    for r in rows:
        same[r["label"]].append((tmp_path / "amb" / r["file"]).read_bytes()
                                == (tmp_path / "plain" / r["file"]).read_bytes())
    assert all(any(v) and not all(v) for v in same.values()), same


def test_as_many_slides_as_classes_is_enough_and_fewer_patches_than_classes_is_refused(tmp_path):
    summary = make_synthetic_dataset(tmp_path / "a", n=6, size=16, n_slides=3, seed=0)
    assert summary["n_slides"] == 3 and summary["class_counts"] == {"UD": 2, "PD": 2, "D": 2}
    with pytest.raises(ValueError, match="n=2 must be at least the number of classes"):
        make_synthetic_dataset(tmp_path / "b", n=2, size=16, n_slides=3)


def test_a_noisy_description_never_names_the_true_class():
    for seed in range(60):
        for label in CLASSES:
            text = noisy_description(label, np.random.default_rng(seed))
            assert not names_class(text, label), (label, text)


def test_names_class_needs_its_own_class_and_no_other():
    assert names_class("Sheets of small round blue cells.", "UD")
    assert not names_class("Sheets of cells beside ganglion-like cells.", "UD")  # two classes named
    assert not names_class("A tissue section.", "UD")


def test_an_opener_ending_in_a_comma_lowercases_the_sentence_it_leads():
    firsts = {p[0] for phrases in _PHRASES.values() for p in phrases["architecture"]}
    seen = set()
    for seed in range(80):
        text = describe_label("PD", np.random.default_rng(seed))
        for opener in ("Microscopically, ", "On H&E, "):
            if text.startswith(opener):
                seen.add(opener)
                assert text[len(opener)].islower() and text[len(opener)].upper() in firsts, text
    assert seen == {"Microscopically, ", "On H&E, "}


@pytest.mark.parametrize("kw", [dict(noisy_description_rate=-0.2), dict(noisy_description_rate=1.5),
                                dict(ambiguous_rate=-0.1), dict(ambiguous_rate=1.01)])
def test_a_rate_outside_0_1_is_refused_before_anything_is_written(tmp_path, kw):
    """A negative noisy rate used to slice the permutation from its end (rate -0.2 of 10 patches: 8 noisy) and a
    bad ambiguous rate was refused only after the class folders were made."""
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        make_synthetic_dataset(tmp_path / "out", n=10, size=16, n_slides=3, **kw)
    assert not (tmp_path / "out").exists()
