"""A multi-label CSV with both `slide_id` and `patient_id`: the split grouped by `slide_id` alone (the first of the
default group columns present), so one patient's slides landed in train and val. Without an explicit
`data.multilabel.group_column`, the patient is now kept whole too; `slide_id` stays the samples' slide."""
from __future__ import annotations

import csv

import numpy as np
from PIL import Image

from support.shards import split_of_each_patient

from mmlnb_dist.data.config import BuildConfig, MultiLabelConfig
from mmlnb_dist.data.multilabel import read_multilabel_csv
from mmlnb_dist.data.split import split_samples


def test_a_patient_column_keeps_each_patient_in_one_split(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(48):  # 12 patients, 2 slides each, 2 patches a slide
        name = f"p{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / name)
        labels = ["fat", "necrosis", "mitosis"][i % 3] + ("|calcification" if i % 5 == 0 else "")
        rows.append({"image": name, "text": f"patch {i}", "labels": labels, "slide_id": f"s{i // 2}",
                     "patient_id": f"P{i // 4}"})
    with open(tmp_path / "pairs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    samples = read_multilabel_csv(tmp_path / "pairs.csv", MultiLabelConfig()).samples
    assert {s.slide_id for s in samples} == {f"s{i}" for i in range(24)}
    for seed in range(6):
        splits = split_samples(samples, BuildConfig(val_fraction=0.25, test_fraction=0.25, seed=seed))
        split_of_each_patient(splits)
