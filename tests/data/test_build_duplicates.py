"""Copies of one image under two names (a patch export run twice, one folder merged into another, a slide saved
as two files) were split like any other images: a copy in train and another in val or test is scored on what the
model trained on, and the metrics overstate without a sign; a copy under another label is a labelling conflict.
The build now finds both from digests of the images it encodes (byte-identical after its deterministic
re-encoding), warns, and lists them in manifest.json "duplicates". Checked against a reference: the shards read
back and grouped by the pixels of their images."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.data import build as B
from mmlnb_dist.data.collect import collect_samples
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.duplicates import warn_held_out_copies
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.data.synthetic import CLASSES, make_synthetic_dataset
from mmlnb_dist.pipeline.report import copy_rows

CONFIG = BuildConfig(max_samples_per_shard=5, val_fraction=0.3, test_fraction=0.3, image_size=32)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    make_synthetic_dataset(src, n=36, size=48, n_slides=12, noisy_description_rate=0.0, seed=0)
    return src


def with_copies(source: Path, folder: Path, copies: dict) -> Path:
    """A labels CSV over `source`'s images plus `copies` {copy name: (original file, label)}, each copy its own
    slide (so the slide-grouped split may put it anywhere)."""
    rows = list(csv.DictReader(open(source / "labels.csv")))
    for row in rows:
        row["path"] = str(source / row.pop("file"))
    folder.mkdir()
    for name, (original, label) in copies.items():
        shutil.copy(source / original, folder / name)
        rows.append({"path": str(folder / name), "label": label, "slide_id": f"copy-{name}"})
    out = folder / "labels.csv"
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "slide_id"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in ("path", "label", "slide_id")} for r in rows)
    return out


def groups_read_back(shards: Path):
    """Reference: samples of the written shards grouped by their decoded pixels -> [(split, key, label)]."""
    groups = defaultdict(list)
    for tar in sorted(shards.glob("*.tar")):
        split = tar.name.split("-")[0]
        for s in iter_shard_samples(tar):
            pixels = np.asarray(Image.open(io.BytesIO(s["jpg"])).convert("RGB"))
            label = json.loads(s["json"])["label"]
            groups[hashlib.sha256(pixels.tobytes()).hexdigest()].append((split, s["__key__"], label))
    return [sorted(g) for g in groups.values() if len(g) > 1]


def listed(manifest, kind):
    return sorted(sorted((m["split"], m["key"], m["label"]) for m in group) for group in manifest["duplicates"][kind])


def test_copies_across_splits_and_under_two_labels_are_listed_and_warned(source, tmp_path, caplog):
    originals = sorted(p.relative_to(source).as_posix() for p in source.glob("*/*.png"))
    copies = {f"copy{i}.png": (originals[i * 3], originals[i * 3].split("/")[0]) for i in range(6)}
    copies["relabelled.png"] = (originals[1], "D" if not originals[1].startswith("D/") else "UD")
    labels = with_copies(source, tmp_path / "in", copies)
    with caplog.at_level(logging.WARNING):
        manifest = B.build_shards(collect_samples(labels, CLASSES), tmp_path / "shards", CONFIG, CLASSES,
                                  progress=False)
    reference = groups_read_back(tmp_path / "shards")
    assert len(reference) == 6 + 1  # every copy is found by the reference, with its original
    across = [g for g in reference if len({split for split, _, _ in g}) > 1]
    conflicting = [g for g in reference if len({label for _, _, label in g}) > 1]
    assert across and conflicting  # the fixture exercises both kinds
    assert listed(manifest, "across_splits") == sorted(across)
    assert listed(manifest, "conflicting_labels") == sorted(conflicting)
    text = caplog.text
    assert f"{len(across)} image(s) in more than one split" in text and "slide_id" in text
    assert f"{len(conflicting)} image(s) under more than one label" in text

    # what evaluation and the pipeline report say: held-out samples whose image is also in train
    held_out = defaultdict(int)
    for group in reference:
        if any(split == "train" for split, _, _ in group):
            for split, _, _ in group:
                if split != "train":
                    held_out[split] += 1
    counts = ShardSet.open(tmp_path / "shards").copies_of_train()
    assert counts == dict(held_out) and counts
    caveat = " ".join(copy_rows({"copies_of_train": counts}))
    assert all(f"{n} {split}" in caveat for split, n in counts.items()) and "overstate" in caveat
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        for split in ("train", *counts):
            warn_held_out_copies(tmp_path / "shards", split)
    assert [r.getMessage().split(" sample(s)")[0] for r in caplog.records] == [f"{n} {s}" for s, n in counts.items()]


def test_a_build_without_copies_lists_none_and_stays_quiet(source, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        manifest = B.build_shards(collect_samples(source, CLASSES), tmp_path / "shards", CONFIG, CLASSES,
                                  progress=False)
    assert manifest["duplicates"] == {"across_splits": [], "conflicting_labels": []}
    assert "more than one split" not in caplog.text
    assert ShardSet.open(tmp_path / "shards").copies_of_train() == {} and copy_rows({"copies_of_train": {}}) == []


def test_a_resumed_build_still_finds_the_copies_in_the_shards_it_reused(source, tmp_path, monkeypatch):
    originals = sorted(p.relative_to(source).as_posix() for p in source.glob("*/*.png"))
    copies = {f"copy{i}.png": (originals[i * 3], originals[i * 3].split("/")[0]) for i in range(6)}
    samples = collect_samples(with_copies(source, tmp_path / "in", copies), CLASSES)
    whole = B.build_shards(samples, tmp_path / "whole", CONFIG, CLASSES, progress=False)

    real, calls = B._encode, [0]

    def stopping(spec, build):
        calls[0] += 1
        if calls[0] > 20:
            raise KeyboardInterrupt
        return real(spec, build)

    monkeypatch.setattr(B, "_encode", stopping)
    with pytest.raises(KeyboardInterrupt):
        B.build_shards(samples, tmp_path / "resumed", CONFIG, CLASSES, progress=False)
    monkeypatch.setattr(B, "_encode", real)
    resumed = B.build_shards(samples, tmp_path / "resumed", CONFIG, CLASSES, progress=False)
    assert resumed["duplicates"] == whole["duplicates"] and whole["duplicates"]["across_splits"]
