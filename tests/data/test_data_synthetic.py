"""The synthetic H&E-like set: determinism, layout, descriptions, slides, and learnability."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.data.synthetic import CLASSES, describe_label, make_synthetic_dataset, random_stain, render_patch

MORPHOLOGY = {"UD": ("small round", "sheets", "scant", "undifferentiated", "minimal neuropil", "packed"),
              "PD": ("neuropil", "fibrillary", "poorly differentiated", "scattered", "nests", "rosettes"),
              "D": ("ganglion", "abundant", "nucleol", "differentiat")}


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = make_synthetic_dataset(out / "a", n=180, size=64, n_slides=18, noisy_description_rate=0.2, seed=1)
    return out, summary


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_same_seed_same_bytes_other_seed_differs(synth, tmp_path):
    out, _ = synth
    make_synthetic_dataset(tmp_path / "b", n=180, size=64, n_slides=18, noisy_description_rate=0.2, seed=1, workers=2)
    a, b = out / "a", tmp_path / "b"
    assert _files(a) == _files(b)
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in _files(a))
    make_synthetic_dataset(tmp_path / "c", n=6, size=64, n_slides=3, seed=2)
    assert (tmp_path / "c" / "UD" / "UD_00000.png").read_bytes() != (a / "UD" / "UD_00000.png").read_bytes()


def test_layout_labels_slides_and_descriptions(synth):
    out, summary = synth
    root = out / "a"
    rows = list(csv.DictReader(open(root / "labels.csv")))
    assert len(rows) == 180 and summary["class_counts"] == {"UD": 60, "PD": 60, "D": 60}
    slide_labels = {}
    for r in rows:
        assert r["file"].startswith(r["label"] + "/") and (root / r["file"]).is_file()
        assert slide_labels.setdefault(r["slide_id"], r["label"]) == r["label"], "a slide has one class"
    assert len(slide_labels) == 18
    img = Image.open(root / rows[0]["file"])
    assert img.size == (64, 64) and img.mode == "RGB"
    descs = [json.loads(line) for line in open(root / "descriptions.jsonl")]
    assert [d["file"] for d in descs] == [r["file"] for r in rows]
    informative = sum(any(w in d["description"].lower() for w in MORPHOLOGY[r["label"]]) for d, r in zip(descs, rows))
    assert informative >= 0.8 * 180 - 15  # about 20% are noisy (generic or another class), some overlap words
    assert summary["noisy_descriptions"] == 36
    assert len({d["description"] for d in descs}) > 60  # varied, not one template per class


def test_describe_label_mentions_class_morphology():
    rng = np.random.default_rng(0)
    for label in CLASSES:
        texts = {describe_label(label, rng) for _ in range(30)}
        assert len(texts) > 5
        assert all(any(w in t.lower() for w in MORPHOLOGY[label]) for t in texts)
    with pytest.raises(ValueError, match="unknown label"):
        describe_label("XX", rng)


def test_render_patch_shape_determinism_and_stain():
    a = render_patch("D", 48, np.random.default_rng(5))
    assert a.shape == (48, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, render_patch("D", 48, np.random.default_rng(5)))
    b = render_patch("D", 48, np.random.default_rng(5), random_stain(np.random.default_rng(1)))
    assert not np.array_equal(a, b)


def _texture_features(arr: np.ndarray) -> np.ndarray:
    """Stain-invariant features: histograms of per-image standardised optical density and its gradient."""
    od = -np.log((arr.astype(np.float32) + 1) / 256).sum(-1)
    z = (od - od.mean()) / (od.std() + 1e-6)
    grad = np.hypot(np.diff(z, axis=0)[:, :-1], np.diff(z, axis=1)[:-1])
    return np.concatenate([np.histogram(z, 10, (-3, 4))[0] / z.size, np.histogram(grad, 8, (0, 3))[0] / grad.size,
                           [(z > 1.5).mean(), np.abs(z).mean()]])


def test_a_simple_classifier_learns_it_on_held_out_slides_but_mean_colour_does_not(synth):
    """Logistic regression on texture histograms, 3 folds of held-out slides: accuracy >= 0.65 (chance 0.33);
    on mean colour alone the same classifier stays well below (slide stains vary)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    root = synth[0] / "a"
    rows = list(csv.DictReader(open(root / "labels.csv")))
    arrays = [np.asarray(Image.open(root / r["file"])) for r in rows]
    texture = np.stack([_texture_features(a) for a in arrays])
    colour = np.stack([a.reshape(-1, 3).mean(0) for a in arrays])
    y = np.array([CLASSES.index(r["label"]) for r in rows])
    slide = np.array([int(r["slide_id"].split("-")[1]) for r in rows])
    scores = {"texture": [], "colour": []}
    for fold in range(3):
        test = (slide // 3) % 3 == fold  # whole slides held out, each class represented
        for name, X in (("texture", texture), ("colour", colour)):
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(X[~test], y[~test])
            scores[name].append(clf.score(X[test], y[test]))
    assert np.mean(scores["texture"]) >= 0.65, scores
    assert np.mean(scores["colour"]) < np.mean(scores["texture"]) - 0.15, scores


def test_fewer_patches_than_slides_report_the_slides_that_have_patches(tmp_path, capsys):
    """`data synth --n 12` with the default 30 slides printed "from 30 slides": 18 of them had no patch."""
    from mmlnb_dist.cli import main

    assert main(["data", "synth", "--out", str(tmp_path / "s"), "--n", "12", "--seed", "7"]) == 0
    slides = {r["slide_id"] for r in csv.DictReader(open(tmp_path / "s" / "labels.csv"))}
    assert len(slides) == 12 and f"from 12 slides to {tmp_path / 's'}" in capsys.readouterr().out


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_slides"):
        make_synthetic_dataset(tmp_path, n=6, n_slides=2)
    with pytest.raises(ValueError, match="unknown label"):
        render_patch("XX", 32, np.random.default_rng(0))


def test_demo_profile_holds_several_slides_per_class_in_each_held_out_split(tmp_path):
    """With the embedded default's synth and build settings, the grouped split puts at least 3 slides of every
    class in val and in test: a test balanced accuracy then averages over slides (stains), not one slide."""
    from collections import defaultdict

    from mmlnb_dist.config import load_config
    from mmlnb_dist.data.build import SampleSpec
    from mmlnb_dist.data.split import split_samples

    cfg = load_config("cpu-demo", [])
    s = cfg.data.synth
    # The real slide and label layout of the demo set, drawn small (the layout does not depend on the size).
    make_synthetic_dataset(tmp_path, n=s.n, size=32, n_slides=s.n_slides, noisy_description_rate=0.0, seed=s.seed)
    with open(tmp_path / "labels.csv", newline="") as f:
        specs = [SampleSpec(r["file"].rsplit("/", 1)[1][:-4], r["label"], b"", slide_id=r["slide_id"])
                 for r in csv.DictReader(f)]
    splits = split_samples(specs, cfg.data.build)
    for split in ("val", "test"):
        slides = defaultdict(set)
        for spec in splits[split]:
            slides[spec.label].add(spec.slide_id)
        counts = {c: len(slides[c]) for c in CLASSES}
        assert min(counts.values()) >= 3, (split, counts)
