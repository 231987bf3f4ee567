"""Multi-label split: iterative stratification (per-label proportions held) over slide/patient groups."""
from __future__ import annotations

import numpy as np

from mmlnb_dist.data.build import SampleSpec
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.split import split_samples

VOCAB = [f"L{i:02d}" for i in range(12)]


def _label_matrix(n_groups: int, seed: int) -> np.ndarray:
    """Seeded groups' label sets: skewed label frequencies (3% to 45%), 1-3 labels a group, a few co-occurring."""
    rng = np.random.default_rng(seed)
    freq = np.linspace(0.03, 0.45, len(VOCAB))
    y = (rng.random((n_groups, len(VOCAB))) < freq).astype(int)
    y[:, 1] |= y[:, 11] & (rng.random(n_groups) < 0.5)  # co-occurrence
    empty = y.sum(1) == 0
    y[empty, rng.integers(0, len(VOCAB), empty.sum())] = 1
    return y


def _samples(y: np.ndarray, per_group: int, grouped: bool):
    specs = []
    for g, row in enumerate(y):
        labels = [VOCAB[j] for j in np.flatnonzero(row)]
        for k in range(per_group):
            specs.append(SampleSpec(f"g{g:04d}-{k}", labels[0], b"", slide_id=f"p{g:04d}" if grouped else None,
                                    meta={"labels": labels}))
    return specs


def _val_deviation(splits, y_total: np.ndarray) -> float:
    """Largest |val share of a label - val share of all samples| over labels, as a share of that label."""
    val = splits["val"]
    n_val = len(val)
    n_all = sum(len(v) for v in splits.values())
    counts = np.zeros(len(VOCAB))
    for s in val:
        for lab in s.meta["labels"]:
            counts[VOCAB.index(lab)] += 1
    expected = y_total * n_val / n_all
    return float(np.max(np.abs(counts - expected) / y_total))


def test_iterative_split_holds_label_proportions_better_than_random():
    y = _label_matrix(600, seed=7)
    samples = _samples(y, per_group=1, grouped=False)
    totals = y.sum(0)
    strat = split_samples(samples, BuildConfig(val_fraction=0.2, seed=3))
    random = split_samples(samples, BuildConfig(val_fraction=0.2, seed=3, stratify=False))
    dev_strat, dev_random = _val_deviation(strat, totals), _val_deviation(random, totals)
    # stated tolerance: each label's share in val within 3 points of the val share of all samples (the old splitter,
    # stratified by a primary label, missed by 6.2 points); the random split misses by more on the same data
    print(f"largest per-label val deviation: iterative {dev_strat:.3f}, random {dev_random:.3f}")
    assert dev_strat <= 0.03, dev_strat
    assert dev_random > dev_strat, (dev_random, dev_strat)
    # iterative stratification trades exact split sizes for label balance: within 2% of all samples
    assert abs(len(strat["val"]) - 120) <= 12


def test_groups_never_straddle_splits_and_are_stratified():
    y = _label_matrix(300, seed=11)
    samples = _samples(y, per_group=3, grouped=True)
    build = BuildConfig(val_fraction=0.2, test_fraction=0.1, seed=5)
    splits = split_samples(samples, build)
    where = {}
    for name, members in splits.items():
        for s in members:
            assert where.setdefault(s.slide_id, name) == name, f"{s.slide_id} in {where[s.slide_id]} and {name}"
    assert len(where) == 300
    n_val_groups = len({s.slide_id for s in splits["val"]})
    n_test_groups = len({s.slide_id for s in splits["test"]})
    assert abs(n_val_groups - 60) <= 6 and abs(n_test_groups - 30) <= 6
    # measured 0.033 (primary-label stratification: 0.047, random: 0.2)
    assert _val_deviation(splits, y.sum(0) * 3) <= 0.04
    random = split_samples(samples, BuildConfig(val_fraction=0.2, test_fraction=0.1, seed=5, stratify=False))
    assert _val_deviation(random, y.sum(0) * 3) > _val_deviation(splits, y.sum(0) * 3)


def test_multilabel_split_is_deterministic_under_the_seed_and_input_order():
    y = _label_matrix(200, seed=1)
    samples = _samples(y, per_group=2, grouped=True)
    build = BuildConfig(val_fraction=0.25, seed=9)
    first = {k: [s.key for s in v] for k, v in split_samples(samples, build).items()}
    again = {k: [s.key for s in v] for k, v in split_samples(list(reversed(samples)), build).items()}
    other = {k: [s.key for s in v] for k, v in split_samples(samples, BuildConfig(val_fraction=0.25, seed=10)).items()}
    assert first == again
    assert set(first["val"]) != set(other["val"])
