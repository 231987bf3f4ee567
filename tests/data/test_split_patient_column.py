"""A patches CSV with a `patient_id` column: the split keeps each patient whole, not only each slide. Slides of
one patient (two blocks, a re-scan) share the patient's tissue and diagnosis; split by slide, one patient's
slides landed in train and val, and the patient-level leak inflated validation metrics without a word."""
from __future__ import annotations

import csv
import json

from support.shards import CLASSES, split_of_each_patient, write_patch_folder

from mmlnb_dist.data.collect import collect_samples
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.split import split_samples


def _patients_csv(tmp_path):
    root = write_patch_folder(tmp_path / "p", per_class=12, size=8)
    rows = []
    for c in CLASSES:
        for i in range(12):  # 3 patients a class, 2 slides each, 2 patches a slide
            rows.append({"path": f"{c}/{c}_{i:03d}.png", "label": c, "slide_id": f"{c}-s{i // 2}",
                         "patient_id": f"{c}-p{i // 4}"})
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_every_patient_lands_in_one_split(tmp_path):
    samples = collect_samples(_patients_csv(tmp_path), CLASSES)
    assert all(s.meta["patient_id"] for s in samples)  # (and so stored in each sample's json member)
    for seed in range(8):
        splits = split_samples(samples, BuildConfig(val_fraction=0.3, test_fraction=0.3, seed=seed))
        split_of_each_patient(splits)
        assert splits["val"] and splits["test"]
    json.dumps(samples[0].meta)


def test_the_manifest_records_the_grouped_split(tmp_path):
    """A CSV with patient ids but no slide ids: the manifest said `group_by_slide: false` of a grouped split."""
    from mmlnb_dist.data.build import build_shards

    samples = collect_samples(_patients_csv(tmp_path), CLASSES)
    for s in samples:
        s.slide_id = None
    build = BuildConfig(val_fraction=0.3, test_fraction=0.3, image_size=16, image_format="png")
    manifest = build_shards(samples, tmp_path / "shards", build, CLASSES, progress=False)
    assert manifest["split"]["group_by_slide"] is True


def test_an_empty_held_out_split_is_explained_by_the_patients(tmp_path, caplog):
    """Grouped by patient ids alone, the empty-split warning counted slides: "0 slide(s) () are too few"."""
    samples = collect_samples(_patients_csv(tmp_path), CLASSES)
    for s in samples:
        s.slide_id = None
        s.meta["patient_id"] = s.label  # one patient a class: nothing to spare for val
    split_samples(samples, BuildConfig(val_fraction=0.2, seed=0))
    said = [r.getMessage() for r in caplog.records if "split is empty" in r.getMessage()]
    assert said and "3 patient(s) (D 1, PD 1, UD 1)" in said[0], said
