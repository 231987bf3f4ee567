"""Audit of splitting (`data.split`) and copy detection (`data.duplicates`): a grouped split keeps every patch of a
slide in one split, is the same for a seed whatever the input order and changes with the seed; group_by_slide=false
splits by patch; rows of one image stay together; copies across splits or labels are reported, copies within one
split under one label are not."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from mmlnb_dist.data.build import SampleSpec
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.duplicates import DuplicateFinder
from mmlnb_dist.data.skipped import skipped_summary
from mmlnb_dist.data.split import split_samples

CLASSES = ["UD", "PD", "D"]


def _specs(slides_per_class=6, per_slide=5, with_slides=True):
    return [SampleSpec(f"{c}_{s}_{i}", c, b"unused", slide_id=f"{c}-s{s}" if with_slides else None)
            for c in CLASSES for s in range(slides_per_class) for i in range(per_slide)]


def _assignment(splits):
    return {s.key: name for name, members in splits.items() for s in members}


def test_grouped_split_keeps_slides_whole_is_seeded_and_changes_with_the_seed():
    """Every slide lies in one split; the same seed gives the same split for any input order; another seed
    gives another split (the seed is not ignored)."""
    specs = _specs()
    build = BuildConfig(val_fraction=0.2, test_fraction=0.2, seed=5)
    first = split_samples(specs, build)
    for name, members in first.items():
        for s in members:
            assert {n for n, m in first.items() for t in m if t.slide_id == s.slide_id} == {name}
    assert sorted(_assignment(first)) == sorted(s.key for s in specs)  # every sample in exactly one split
    shuffled = list(specs)
    random.Random(1).shuffle(shuffled)
    again = split_samples(shuffled, build)
    assert {n: [s.key for s in m] for n, m in again.items()} == {n: [s.key for s in m] for n, m in first.items()}
    others = [_assignment(split_samples(specs, BuildConfig(val_fraction=0.2, test_fraction=0.2, seed=seed)))
              for seed in range(4)]
    assert any(o != _assignment(first) for o in others)


def test_group_by_slide_false_splits_by_patch_exactly():
    """With group_by_slide=false a class's patches are split one by one (round(n * fraction) each), not by slide."""
    specs = _specs(slides_per_class=2, per_slide=10)
    splits = split_samples(specs, BuildConfig(val_fraction=0.2, test_fraction=0.1, group_by_slide=False, seed=0))
    for name, expected in (("val", 4), ("test", 2), ("train", 14)):
        assert Counter(s.label for s in splits[name]) == {c: expected for c in CLASSES}, name
    grouped = split_samples(specs, BuildConfig(val_fraction=0.2, test_fraction=0.1, seed=0))
    assert all(len(grouped[name]) % 10 == 0 for name in grouped)  # whole slides of 10


def test_rows_of_one_image_stay_in_one_split(tmp_path):
    """Several captions of one image file (no slide id) are one unit: never scored under one caption after
    training under another."""
    specs = []
    for i in range(12):
        image = tmp_path / f"img{i}.png"
        specs += [SampleSpec(f"img{i}_cap{j}", CLASSES[i % 3], Path(image)) for j in range(3)]
    splits = split_samples(specs, BuildConfig(val_fraction=0.25, test_fraction=0.25, seed=2))
    where = {}
    for name, members in splits.items():
        for s in members:
            assert where.setdefault(str(s.image), name) == name
    assert {name for name in where.values()} == {"train", "val", "test"}


def test_duplicates_across_splits_and_labels_are_reported_and_others_not():
    """Copies in two splits and copies under two labels are listed; copies in one split under one label are not;
    a multi-label build does not report label conflicts (its label is only the first of a set)."""
    finder = DuplicateFinder()
    for digest, split, key, label in [("a", "train", "k1", "UD"), ("a", "val", "k2", "UD"), ("a", "test", "k3", "UD"),
                                      ("b", "train", "k4", "UD"), ("b", "train", "k5", "PD"),
                                      ("c", "train", "k6", "D"), ("c", "train", "k7", "D"),
                                      ("d", "val", "k8", "D")]:
        finder.add(digest, split, key, label)
    report = finder.report(multilabel=False)
    assert report["across_splits"] == [[{"split": "test", "key": "k3", "label": "UD"},
                                        {"split": "train", "key": "k1", "label": "UD"},
                                        {"split": "val", "key": "k2", "label": "UD"}]]
    assert report["conflicting_labels"] == [[{"split": "train", "key": "k4", "label": "UD"},
                                             {"split": "train", "key": "k5", "label": "PD"}]]
    multi = finder.report(multilabel=True)
    assert len(multi["across_splits"]) == 1 and multi["conflicting_labels"] == []


def test_a_mixed_slide_is_stratified_by_its_majority_label():
    """A slide is stratified by the label most of its patches carry, not by its first patch's: 5 slides mostly PD
    and 5 mostly D (each with one UD patch sorting first) give val one slide of each at 0.2."""
    specs = [SampleSpec(f"{major}{s}_{i}", "UD" if i == 0 else major, b"", slide_id=f"{major}{s}")
             for major in ("PD", "D") for s in range(5) for i in range(3)]
    for seed in range(6):
        splits = split_samples(specs, BuildConfig(val_fraction=0.2, test_fraction=0.0, seed=seed))
        val_slides = sorted({s.slide_id.rstrip("0123456789") for s in splits["val"]})
        assert val_slides == ["D", "PD"], (seed, val_slides)


def test_multilabel_held_out_sizes_round_to_nearest():
    """Iterative stratification gives a held-out split round(n * fraction) groups (23 x 0.3 = 6.9: 7, not 6)."""
    labels = ["a", "b", "c"]
    specs = [SampleSpec(f"s{i:02d}", labels[i % 3], b"", meta={"labels": sorted({labels[i % 3], labels[(i // 3) % 3]})})
             for i in range(23)]
    splits = split_samples(specs, BuildConfig(val_fraction=0.3, test_fraction=0.3, seed=0))
    assert {n: len(r) for n, r in splits.items()} == {"train": 9, "val": 7, "test": 7}


def test_samples_without_a_label_set_are_split_single_label():
    """Only a build whose every sample carries a label set is multi-label; a mixed list is split by class."""
    specs = _specs(with_slides=False)
    specs[0] = SampleSpec(specs[0].key, specs[0].label, b"unused", meta={"labels": [specs[0].label]})
    splits = split_samples(specs, BuildConfig(val_fraction=0.2, test_fraction=0.2, seed=0))
    assert {n: Counter(s.label for s in r) for n, r in splits.items()} == {
        "train": {c: 18 for c in CLASSES}, "val": {c: 6 for c in CLASSES}, "test": {c: 6 for c in CLASSES}}


def test_skipped_summary_counts_only_the_images_not_shown():
    """The build's one-line summary of unreadable images says how many more there are, and nothing when none."""
    skipped = [{"key": f"k{i}", "source": f"img{i}.png", "reason": "truncated"} for i in range(4)]
    assert skipped_summary(skipped[:3]).endswith("img2.png (truncated)")
    assert skipped_summary(skipped).endswith("img2.png (truncated); and 1 more")
    assert skipped_summary(skipped).startswith("skipped 4 unreadable images")


def test_slides_with_tied_labels_split_the_same_for_any_input_order():
    """A slide with as many patches of one class as of another is stratified the same whatever order the samples
    come in (the split is a function of the seed and the set of samples)."""
    specs = [SampleSpec(f"{s:02d}_{i}", CLASSES[(s + i) % 3], b"", slide_id=f"s{s:02d}") for s in range(15)
             for i in range(2)]
    build = BuildConfig(val_fraction=0.2, test_fraction=0.2, seed=0)
    first = {n: [s.key for s in r] for n, r in split_samples(specs, build).items()}
    for seed in range(5):
        shuffled = list(specs)
        random.Random(seed).shuffle(shuffled)
        assert {n: [s.key for s in r] for n, r in split_samples(shuffled, build).items()} == first, seed
