"""Multi-label shard building from an image/text/label-set CSV: bad rows dropped and reported, label merge,
minimum frequency, vocabulary and per-label counts in the manifest, `shards verify` on the result."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.cli import main
from mmlnb_dist.data.config import BuildConfig, MultiLabelConfig
from mmlnb_dist.data.multilabel import build_multilabel_shards, load_label_merge, read_multilabel_csv
from mmlnb_dist.data.preprocess import MultiHotLabel, sample_meta
from mmlnb_dist.data.reader import iter_shard_samples
from mmlnb_dist.data.shardset import ShardError, ShardSet
from mmlnb_dist.data.verify import verify_shards

GOOD = [  # (labels cell, slide): 12 good rows
    ("Neuropil|Necrosis", "s1"), ("Neuropil", "s1"), ("Immunology|Necrosis", "s2"), ("Immunopathology", "s2"),
    ("Calcification|Neuropil", "s3"), ("Necrosis", "s3"), ("Neuropil|Immunology|Immunopathology", "s4"),
    ("Calcification", "s4"), ("Necrosis|Calcification", "s5"), ("Neuropil", "s5"), ("Immunology", "s6"),
    ("Necrosis|Neuropil|Calcification", "s6"),
]
MERGE = "Immune:\n  - Immunology\n  - Immunopathology\n"


def _png(path: Path, value: int) -> None:
    arr = np.full((20, 20, 3), value, np.uint8)
    Image.fromarray(arr).save(path)


def _write_inputs(root: Path, bad: bool = True) -> Path:
    (root / "img").mkdir(parents=True)
    rows = []
    for i, (labels, slide) in enumerate(GOOD):
        _png(root / "img" / f"g{i}.png", 10 * i)
        rows.append({"image": f"img/g{i}.png", "text": f"caption {i}", "labels": labels, "slide_id": slide})
    if bad:
        _png(root / "img" / "b.png", 200)
        (root / "img" / "corrupt.png").write_bytes(b"not a png at all")
        rows.insert(2, {"image": "img/nowhere.png", "text": "lost", "labels": "Neuropil", "slide_id": "s7"})  # row 3
        rows.insert(5, {"image": "img/b.png", "text": "  ", "labels": "Necrosis", "slide_id": "s7"})  # row 6
        rows.insert(8, {"image": "img/b.png", "text": "odd", "labels": "Neuropil|Mystery", "slide_id": "s7"})  # row 9
        rows.insert(11, {"image": "img/b.png", "text": "many", "slide_id": "s7",  # row 12
                         "labels": "Neuropil|Necrosis|Calcification|Immunology"})
        rows.append({"image": "img/corrupt.png", "text": "broken", "labels": "Neuropil", "slide_id": "s7"})  # row 17
    csv_path = root / "pairs.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["image", "text", "labels", "slide_id"])
        w.writeheader()
        w.writerows(rows)
    (root / "merge.yaml").write_text(MERGE)
    return csv_path


VOCAB = ["Calcification", "Immune", "Necrosis", "Neuropil"]


def _hand_counts(label_sets):
    return dict(Counter(label for labels in label_sets for label in labels))


def test_bad_rows_are_dropped_and_reported_and_good_rows_built(tmp_path, capsys):
    csv_path = _write_inputs(tmp_path / "in")
    out = tmp_path / "shards"
    code = main(["shards", "build", "--input", str(csv_path), "--task", "multilabel", "--out", str(out),
                 "--classes", ",".join(VOCAB), "--label-merge", str(tmp_path / "in" / "merge.yaml"),
                 "--max-labels", "3", "--no-progress", "data.build.val_fraction=0.25", "data.build.image_format=png",
                 "data.build.image_size=16", "data.build.max_samples_per_shard=4"])
    assert code == 0
    printed = capsys.readouterr().out
    m = ShardSet.open(out).manifest
    dropped = {d["row"]: d["reason"] for d in m["dropped_rows"]}
    assert sorted(dropped) == [3, 6, 9, 12, 17]
    assert "image file not found" in dropped[3]
    assert "empty text" in dropped[6]
    assert "Mystery" in dropped[9] and "outside the vocabulary" in dropped[9]
    assert "4 labels" in dropped[12] and "max_labels=3" in dropped[12]
    assert "unreadable image" in dropped[17]
    for row, reason in dropped.items():  # each printed with its row number and reason
        assert f"row {row}:" in printed and reason in printed
    # exactly the good rows, with merged labels, the text in `txt` and the label set in the json member
    got = {}
    for _, info in m["splits"].items():
        for entry in info["shards"]:
            for s in iter_shard_samples(out / entry["file"]):
                meta = sample_meta(s)
                got[s["txt"].decode()] = meta["labels"]
                hot = MultiHotLabel(m["classes"])(s, meta)
                assert [m["classes"][i] for i in np.flatnonzero(hot)] == meta["labels"]
                assert meta["multi_hot"] == hot.astype(int).tolist()
    expected = {}
    for i, (labels, _) in enumerate(GOOD):
        merged = {"Immune" if x.startswith("Immuno") else x for x in labels.split("|")}
        expected[f"caption {i}"] = sorted(merged, key=VOCAB.index)
    assert got == expected
    assert m["classes"] == VOCAB and m["task"] == "multilabel"
    report = verify_shards(out, progress=False)
    assert report.ok, report.problems


def test_per_label_counts_equal_a_hand_count(tmp_path):
    csv_path = _write_inputs(tmp_path / "in", bad=False)
    opts = MultiLabelConfig(label_merge=tmp_path / "in" / "merge.yaml")
    build = BuildConfig(val_fraction=0.25, image_format="png", image_size=16, max_samples_per_shard=3)
    m = build_multilabel_shards(csv_path, tmp_path / "shards", build, opts, progress=False)
    total: Counter = Counter()
    for split, info in m["splits"].items():
        split_sets = []
        for entry in info["shards"]:
            sets = [sample_meta(s)["labels"] for s in iter_shard_samples(tmp_path / "shards" / entry["file"])]
            assert entry["label_counts"] == {c: _hand_counts(sets).get(c, 0) for c in m["classes"]}
            split_sets += sets
        assert info["label_counts"] == {c: _hand_counts(split_sets).get(c, 0) for c in m["classes"]}
        total.update(info["label_counts"])
    hand = Counter()
    for labels, _ in GOOD:
        hand.update({"Immune" if x.startswith("Immuno") else x for x in labels.split("|")})
    assert dict(total) == dict(hand)
    assert m["label_counts"] == {c: hand[c] for c in m["classes"]}
    assert verify_shards(tmp_path / "shards", progress=False).ok


def test_merge_and_min_frequency(tmp_path):
    root = tmp_path / "in"
    csv_path = _write_inputs(root, bad=False)
    assert load_label_merge(root / "merge.yaml") == {"Immunology": "Immune", "Immunopathology": "Immune"}
    # Without merging: Immunology 3, Immunopathology 2, Calcification 4, Necrosis 5, Neuropil 6.
    plain = read_multilabel_csv(csv_path, MultiLabelConfig())
    assert plain.classes == ["Calcification", "Immunology", "Immunopathology", "Necrosis", "Neuropil"]
    # min_frequency=3 removes Immunopathology (2 rows); row 4 held only it and is dropped, the others keep the rest
    rare = read_multilabel_csv(csv_path, MultiLabelConfig(min_frequency=3))
    assert rare.classes == ["Calcification", "Immunology", "Necrosis", "Neuropil"]
    assert [(d["row"], d["reason"]) for d in rare.dropped] == [
        (4, "no label left after min_frequency=3 (removed: Immunopathology)")]
    by_text = {s.description: s.meta["labels"] for s in rare.samples}
    assert by_text["caption 6"] == ["Immunology", "Neuropil"]
    # merging first: Immune has 4 rows (row 7 holds both sources once), so it survives min_frequency=4
    merged = read_multilabel_csv(csv_path, MultiLabelConfig(min_frequency=4, label_merge=root / "merge.yaml"))
    assert merged.classes == ["Calcification", "Immune", "Necrosis", "Neuropil"]
    assert not merged.dropped
    assert {s.description: s.meta["labels"] for s in merged.samples}["caption 6"] == ["Immune", "Neuropil"]
    assert merged.label_counts == {"Calcification": 4, "Immune": 4, "Necrosis": 5, "Neuropil": 6}


def test_separator_columns_and_group_column_are_configurable(tmp_path):
    (tmp_path / "p").mkdir()
    _png(tmp_path / "p" / "a.png", 1)
    _png(tmp_path / "p" / "b.png", 2)
    (tmp_path / "x.csv").write_text("file,caption,findings,patient\np/a.png,one,A; B,P1\np/b.png,two,B,P2\n")
    opts = MultiLabelConfig(image_column="file", text_column="caption", labels_column="findings",
                            group_column="patient", separator=";")
    got = read_multilabel_csv(tmp_path / "x.csv", opts)
    assert got.classes == ["A", "B"]
    assert [(s.meta["labels"], s.slide_id, s.label) for s in got.samples] == [(["A", "B"], "P1", "A"), (["B"], "P2", "B")]
    with pytest.raises(ShardError, match="no column 'labels'.*findings"):
        read_multilabel_csv(tmp_path / "x.csv", MultiLabelConfig(image_column="file", text_column="caption"))


def test_no_good_row_is_an_error_naming_the_rows(tmp_path):
    (tmp_path / "x.csv").write_text("image,text,labels\nmissing.png,t,A\n")
    with pytest.raises(ShardError, match="no usable row.*row 1: image file not found"):
        read_multilabel_csv(tmp_path / "x.csv", MultiLabelConfig())


def test_verify_checks_label_sets_and_label_counts(tmp_path):
    csv_path = _write_inputs(tmp_path / "in", bad=False)
    build = BuildConfig(val_fraction=0.25, image_format="png", image_size=16, max_samples_per_shard=20)
    out = tmp_path / "shards"
    m = build_multilabel_shards(csv_path, out, build, MultiLabelConfig(), progress=False)
    assert verify_shards(out, progress=False).ok
    entry = m["splits"]["train"]["shards"][0]
    entry["label_counts"]["Neuropil"] += 1  # the manifest no longer matches the shard's samples
    (out / "manifest.json").write_text(json.dumps(m))
    problems = verify_shards(out, progress=False).problems
    assert any(entry["file"] in p and "label counts" in p for p in problems), problems


def test_verify_cli_prints_the_label_table(tmp_path, capsys):
    csv_path = _write_inputs(tmp_path / "in", bad=False)
    build = BuildConfig(val_fraction=0.25, image_format="png", image_size=16)
    build_multilabel_shards(csv_path, tmp_path / "shards", build, MultiLabelConfig(), progress=False)
    capsys.readouterr()
    assert main(["shards", "verify", str(tmp_path / "shards"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "label counts" in printed and "Immunopathology" in printed and "ok:" in printed


def test_rebuild_is_byte_identical(tmp_path):
    csv_path = _write_inputs(tmp_path / "in", bad=True)
    build = BuildConfig(val_fraction=0.25, image_format="png", image_size=16, max_samples_per_shard=5)
    opts = MultiLabelConfig(label_merge=tmp_path / "in" / "merge.yaml", max_labels=3)
    for out in ("a", "b"):
        build_multilabel_shards(csv_path, tmp_path / out, build, opts, classes=VOCAB, progress=False)
    files = sorted(p.name for p in (tmp_path / "a").iterdir() if not p.name.startswith("."))
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir() if not p.name.startswith("."))
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_rows_of_one_image_never_straddle_two_splits_without_a_group_column(tmp_path):
    """Quilt-style pairs: one image with several captions is several rows. Without a slide/patient column the split
    went row by row, so an image seen in training (under one caption) was scored in validation (under another)."""
    (tmp_path / "img").mkdir()
    rows = []
    labels = ["Neuropil", "Necrosis", "Calcification", "Immunology"]
    for i in range(16):
        _png(tmp_path / "img" / f"i{i}.png", 12 * i)
        for c in range(3):
            rows.append({"image": f"img/i{i}.png", "text": f"caption {c} of image {i}",
                         "labels": labels[i % 4] + ("|" + labels[(i + 1) % 4] if c == 2 else "")})
    csv_path = tmp_path / "pairs.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, ["image", "text", "labels"])
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "shards"
    build_multilabel_shards(csv_path, out, BuildConfig(val_fraction=0.25, test_fraction=0.25, image_format="png",
                                                       image_size=20), MultiLabelConfig(), progress=False)
    m = ShardSet.open(out).manifest
    split_of = {}
    for split, info in m["splits"].items():
        for e in info["shards"]:
            for s in iter_shard_samples(out / e["file"]):
                image = json.loads(s["json"])["file"]
                assert split_of.setdefault(image, split) == split, (image, split_of[image], split)
    assert len(split_of) == 16 and set(split_of.values()) == {"train", "val", "test"}


def test_windows_paths_in_a_multilabel_csv_are_read(tmp_path):
    """`img\\g0.png` (a CSV written on Windows) was "image file not found" for every row."""
    csv_path = _write_inputs(tmp_path, bad=False)
    csv_path.write_text(csv_path.read_text().replace("img/", "img\\"))
    got = read_multilabel_csv(csv_path, MultiLabelConfig())
    assert not got.dropped and len(got.samples) == len(GOOD)
    assert [s.meta["file"] for s in got.samples] == [f"img/g{i}.png" for i in range(len(GOOD))]
