"""Audit of `predict`'s per-slide file (`predict/slides.py`) against pandas/numpy on random rows: patch counts,
mean probabilities, the class of the highest mean, vote counts, the majority vote with ties broken by the higher
mean, the slide's majority true label with ties broken by name; rows without a slide left out, slides in order of
their ids. Multi-label: mean probability per label and the label set chosen from the means by the patches' rule."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmlnb_dist.predict import multilabel_slide_aggregates, slide_aggregates

CLASSES = ["UD", "PD", "D"]  # not alphabetical


def _random_rows(seed: int, n: int = 60):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(len(CLASSES)), n)
    slides = rng.choice(["s10", "s2", "s07", "", None], n)
    truth = rng.choice(CLASSES + [""], n)
    return [{"slide_id": s, "label": CLASSES[int(np.argmax(p))], "true_label": t or None,
             **{f"prob_{c}": float(p[i]) for i, c in enumerate(CLASSES)}}
            for p, s, t in zip(probs, slides, truth)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_label_slide_rows_equal_a_pandas_groupby(seed):
    rows = _random_rows(seed)
    got = slide_aggregates(rows, CLASSES)
    df = pd.DataFrame(rows)
    df = df[df["slide_id"].notna() & (df["slide_id"] != "")]
    assert [g["slide_id"] for g in got] == sorted(df["slide_id"].unique())
    for g in got:
        part = df[df["slide_id"] == g["slide_id"]]
        mean = part[[f"prob_{c}" for c in CLASSES]].mean()
        votes = part["label"].value_counts()
        assert g["n_patches"] == len(part)
        for c in CLASSES:
            assert g[f"mean_prob_{c}"] == pytest.approx(mean[f"prob_{c}"], abs=1e-12)
            assert g[f"votes_{c}"] == int(votes.get(c, 0))
        assert g["label_mean_prob"] == CLASSES[int(np.argmax(mean.to_numpy()))]
        top = votes.max()
        tied = [c for c in CLASSES if votes.get(c, 0) == top]
        assert g["label_majority"] == max(tied, key=lambda c: mean[f"prob_{c}"])
        truth = part["true_label"].dropna().value_counts()
        if len(truth):
            assert g["true_label"] == sorted(truth[truth == truth.max()].index)[0]
        else:
            assert "true_label" not in g


def _row(slide, label, probs, true_label=None):
    return {"slide_id": slide, "label": label, "true_label": true_label,
            **{f"prob_{c}": p for c, p in zip(CLASSES, probs)}}


def test_a_tied_vote_goes_to_the_higher_mean_and_a_tied_truth_to_the_first_name():
    """Two patches UD and two D: D has the higher mean, so D wins the vote though UD is the first class; the true
    labels tie between PD and D: D comes first by name."""
    rows = [_row("s", "UD", [0.5, 0.2, 0.3], "PD"), _row("s", "UD", [0.4, 0.3, 0.3], "PD"),
            _row("s", "D", [0.1, 0.1, 0.8], "D"), _row("s", "D", [0.2, 0.1, 0.7], "D")]
    (got,) = slide_aggregates(rows, CLASSES)
    assert got["label_majority"] == "D" and got["label_mean_prob"] == "D" and got["true_label"] == "D"
    assert (got["votes_UD"], got["votes_PD"], got["votes_D"]) == (2, 0, 2)
    assert got["mean_prob_UD"] == pytest.approx(0.3) and got["mean_prob_D"] == pytest.approx(0.525)


def test_rows_without_slides_give_no_slide_rows():
    assert slide_aggregates([_row(None, "UD", [1, 0, 0]), _row("", "PD", [0, 1, 0])], CLASSES) == []
    assert multilabel_slide_aggregates([_row(None, "UD", [1, 0, 0])], CLASSES, top_k=1) == []


def test_multilabel_slide_rows_choose_labels_from_the_mean_probabilities():
    rng = np.random.default_rng(3)
    probs = rng.random((30, len(CLASSES)))
    slides = rng.choice(["b", "a", "c"], 30)
    rows = [{"slide_id": s, **{f"prob_{c}": float(p[i]) for i, c in enumerate(CLASSES)}}
            for p, s in zip(probs, slides)]
    for top_k, threshold, name in ((2, 0.0, "top-2"), (1, 0.5, "p>=0.5")):
        got = multilabel_slide_aggregates(rows, CLASSES, top_k, threshold)
        assert [g["slide_id"] for g in got] == ["a", "b", "c"]
        for g in got:
            mean = probs[slides == g["slide_id"]].mean(axis=0)
            assert g["n_patches"] == int((slides == g["slide_id"]).sum()) and g["selection"] == name
            assert [g[f"mean_prob_{c}"] for c in CLASSES] == pytest.approx(mean, abs=1e-12)
            order = [CLASSES[i] for i in np.argsort(-mean, kind="stable")]
            want = order[:top_k] if threshold == 0 else [c for c in order if mean[CLASSES.index(c)] >= threshold]
            assert g["labels"] == "|".join(want)
    # a mean exactly at the threshold is chosen (p >= t, as for the patches)
    exact = [{"slide_id": "s", "prob_UD": 0.25, "prob_PD": 0.5, "prob_D": 0.75},
             {"slide_id": "s", "prob_UD": 0.75, "prob_PD": 0.5, "prob_D": 0.25}]
    assert multilabel_slide_aggregates(exact, CLASSES, 1, 0.5)[0]["labels"] == "UD|PD|D"
