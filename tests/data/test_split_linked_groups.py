"""A grouped split keeps whole every slide, patient and image file, also when the ids overlap: a slide whose
rows name its patient on some rows only (a missing cell), or one image file listed under two slides (or once with a
slide id and once without). Each was split across train and val (one unit per patient, another per slide)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from mmlnb_dist.data.build import SampleSpec
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.split import split_samples

BUILD = BuildConfig(val_fraction=0.3, test_fraction=0.3, seed=0)


def _where(splits, attr):
    found = defaultdict(set)
    for name, members in splits.items():
        for s in members:
            found[attr(s)].add(name)
    return found


def _spec(i, label, slide, patient=None, image=None):
    meta = {"file": image or f"{label}/{i}.png", **({"patient_id": patient} if patient else {})}
    return SampleSpec(f"k{i:03d}", label, Path(meta["file"]), slide, None, meta)


@pytest.mark.parametrize("seed", range(8))
def test_a_slide_with_its_patient_on_some_rows_only_stays_whole(seed):
    samples = []
    for c, label in enumerate(("UD", "PD", "D")):
        for slide in range(5):
            for j in range(4):  # the patient cell is missing on the slide's last two rows
                patient = f"P{label}{slide}" if j < 2 else None
                samples.append(_spec(len(samples), label, f"S{label}{slide}", patient))
    splits = split_samples(samples, BUILD.model_copy(update={"seed": seed}))
    assert sum(len(v) for v in splits.values()) == len(samples)
    spread = {slide: names for slide, names in _where(splits, lambda s: s.slide_id).items() if len(names) > 1}
    assert spread == {}, f"slides in more than one split: {spread}"


@pytest.mark.parametrize("seed", range(8))
def test_one_image_listed_under_two_slides_lands_in_one_split(seed):
    samples = []
    for label in ("UD", "PD", "D"):
        for slide in range(5):
            for j in range(3):
                samples.append(_spec(len(samples), label, f"S{label}{slide}", image=f"{label}/S{slide}_{j}.png"))
        for slide in range(4):  # a file listed again, under the next slide or with no slide id
            samples.append(_spec(len(samples), label, f"S{label}{slide + 1}" if slide % 2 else None,
                                 image=f"{label}/S{slide}_0.png"))
    splits = split_samples(samples, BUILD.model_copy(update={"seed": seed}))
    spread = {image: names for image, names in _where(splits, lambda s: s.meta["file"]).items() if len(names) > 1}
    assert spread == {}, f"images in more than one split: {spread}"
