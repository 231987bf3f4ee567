"""The synthetic multi-label set: deterministic, every finding present and visible, captions with stated noise,
and readable by `shards build --task multilabel`."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from mmlnb_dist.cli import main
from mmlnb_dist.data.shardset import ShardSet
from mmlnb_dist.data.synthetic_multilabel import FINDING_PHRASES, FINDINGS, make_multilabel_dataset
from mmlnb_dist.data.verify import verify_shards

N, SIZE, SEED = 240, 64, 4


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("mlsynth") / "src"
    summary = make_multilabel_dataset(out, n=N, size=SIZE, n_slides=24, omit_rate=0.25, wrong_rate=0.2,
                                      faint_rate=0.0, seed=SEED)
    with open(out / "pairs.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return out, summary, rows


def _mentioned(caption: str):
    return {f for f in FINDINGS if any(p in caption.lower() for p in FINDING_PHRASES[f])}


def test_deterministic_under_the_seed(synth, tmp_path):
    out, summary, rows = synth
    again = make_multilabel_dataset(tmp_path / "again", n=N, size=SIZE, n_slides=24, omit_rate=0.25, wrong_rate=0.2,
                                    faint_rate=0.0, seed=SEED)
    assert again == {**summary, "out_dir": str(tmp_path / "again")}
    assert (tmp_path / "again" / "pairs.csv").read_bytes() == (out / "pairs.csv").read_bytes()
    for r in rows[:20]:
        assert (tmp_path / "again" / r["image"]).read_bytes() == (out / r["image"]).read_bytes()
    other = make_multilabel_dataset(tmp_path / "other", n=N, size=SIZE, n_slides=24, seed=SEED + 1)
    assert (tmp_path / "other" / "pairs.csv").read_bytes() != (out / "pairs.csv").read_bytes()
    assert other["num_samples"] == N


def test_vocabulary_and_every_label_appears(synth):
    _, summary, rows = synth
    assert 10 <= len(FINDINGS) <= 20
    seen = {lab for r in rows for lab in r["labels"].split("|")}
    assert seen == set(FINDINGS)
    assert all(1 <= len(r["labels"].split("|")) <= 3 for r in rows)
    assert summary["label_counts"] == {f: sum(f in r["labels"].split("|") for r in rows) for f in FINDINGS}


def test_captions_mention_a_noisy_subset_at_the_stated_rates(synth):
    _, summary, rows = synth
    true_total = omitted = wrong_captions = 0
    for r in rows:
        truth, said = set(r["labels"].split("|")), _mentioned(r["text"])
        assert r["text"].strip()
        true_total += len(truth)
        omitted += len(truth - said)
        wrong_captions += bool(said - truth)
    # omission: each true finding left out with p=0.25; wrong finding added to a caption with p=0.2 (binomial
    # standard errors about 0.02 and 0.026 here: allow 3 of them)
    assert abs(omitted / true_total - 0.25) < 0.065, omitted / true_total
    assert abs(wrong_captions / len(rows) - 0.2) < 0.08, wrong_captions / len(rows)
    assert summary["omitted_mentions"] == omitted and summary["wrong_mentions"] >= wrong_captions


def _finding_aurocs(out: Path, rows) -> dict:
    """Per finding: a pixel statistic (a logistic regression on the image's log colour histogram, 4 levels per
    channel, fitted on half the images) scored on the other half: AUROC of images with vs without the finding."""
    from sklearn.linear_model import LogisticRegression

    def colour_histogram(path: Path) -> np.ndarray:
        q = np.minimum(np.asarray(Image.open(path).convert("RGB"), np.int64) // 64, 3)
        hist = np.bincount((q[..., 0] * 16 + q[..., 1] * 4 + q[..., 2]).ravel(), minlength=64) / q[..., 0].size
        return np.log(hist + 1e-3)

    x = np.stack([colour_histogram(out / r["image"]) for r in rows])
    y = np.array([[f in r["labels"].split("|") for f in FINDINGS] for r in rows])
    fit, held = np.arange(len(rows)) % 2 == 0, np.arange(len(rows)) % 2 == 1
    aucs = {}
    for j, f in enumerate(FINDINGS):
        model = LogisticRegression(C=10.0, max_iter=2000).fit(x[fit], y[fit, j])
        aucs[f] = roc_auc_score(y[held, j], model.decision_function(x[held]))
    print({f: round(a, 3) for f, a in aucs.items()})
    return aucs


def test_each_finding_is_visible_in_the_pixels(synth):
    """At full contrast every finding separates, whatever else co-occurs (measured, seed 4: every AUROC 1.0)."""
    out, _, rows = synth
    aucs = _finding_aurocs(out, rows)
    assert min(aucs.values()) > 0.9, aucs


def test_faint_findings_are_harder_but_still_visible(tmp_path):
    """With the default faint_rate=0.3 each finding is still measurably in the pixels, less plainly (measured,
    seed 4: AUROC 0.71 (neuropil) to 1.0), which leaves the caption something to add."""
    out = tmp_path / "faint"
    summary = make_multilabel_dataset(out, n=N, size=SIZE, n_slides=24, seed=SEED)
    with open(out / "pairs.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    faint = sum(len(r["faint"].split("|")) for r in rows if r["faint"])
    true_total = sum(len(r["labels"].split("|")) for r in rows)
    assert faint == summary["faint_findings"] and abs(faint / true_total - 0.3) < 0.07
    aucs = _finding_aurocs(out, rows)
    assert min(aucs.values()) > 0.65 and np.mean(list(aucs.values())) < 0.99, aucs


def test_synth_then_multilabel_build_from_the_cli(synth, tmp_path, capsys):
    out = tmp_path / "src"
    assert main(["data", "synth", "--task", "multilabel", "--out", str(out), "--n", "40", "--size", "48",
                 "--n-slides", "8", "--seed", "1"]) == 0
    assert (out / "pairs.csv").is_file()
    shards = tmp_path / "shards"
    assert main(["shards", "build", "--input", str(out / "pairs.csv"), "--task", "multilabel", "--out", str(shards),
                 "--no-progress", "data.build.image_size=32"]) == 0
    s = ShardSet.open(shards)
    assert set(s.classes) <= set(FINDINGS) and s.manifest["dropped_rows"] == []
    assert s.num_samples("train") + s.num_samples("val") == 40
    assert verify_shards(shards, progress=False).ok
