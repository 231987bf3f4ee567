"""The synthetic multi-label set written again into its own folder (defect hunt, clip4): a smaller set leaves no
patch of the larger one behind, and a set of more than 99999 patches (`p100000.png` on) is still its own."""
from __future__ import annotations

import csv

from mmlnb_dist.data.synthetic_multilabel import make_multilabel_dataset


def _images(out):
    return sorted(p.name for p in (out / "images").iterdir())


def test_a_smaller_rerun_leaves_only_its_own_patches(tmp_path):
    out = tmp_path / "s"
    make_multilabel_dataset(out, n=14, size=16, n_slides=3)
    make_multilabel_dataset(out, n=12, size=16, n_slides=3)
    with open(out / "pairs.csv", newline="", encoding="utf-8") as f:
        listed = sorted(row["image"].split("/")[1] for row in csv.DictReader(f))
    assert _images(out) == listed == [f"p{i:05d}.png" for i in range(12)]


def test_a_six_digit_patch_of_a_large_earlier_set_is_the_generators_own(tmp_path):
    """A set of 100000+ patches names its last ones `p100000.png`...: a rerun into that folder was refused as
    holding foreign files; now they are its own, removed as stale when the new set is smaller."""
    out = tmp_path / "s"
    make_multilabel_dataset(out, n=12, size=16, n_slides=3)
    (out / "images" / "p100000.png").write_bytes((out / "images" / "p00000.png").read_bytes())
    make_multilabel_dataset(out, n=12, size=16, n_slides=3)
    assert _images(out) == [f"p{i:05d}.png" for i in range(12)]
