"""A multi-label split gives val and test the size asked for. Iterative stratification returns fewer rows than
its test_size when labels are rare: 40 single-row groups with 30 random labels at 0.2 / 0.2 gave val 2 and test 5
instead of 8 and 8, silently. The split is now topped up with seeded random groups."""
from __future__ import annotations

import numpy as np

from mmlnb_dist.data.build import SampleSpec
from mmlnb_dist.data.config import BuildConfig
from mmlnb_dist.data.split import split_samples


def _rare_label_samples(n: int = 40, n_labels: int = 30, seed: int = 0):
    """`n` samples, each its own group (no slide id), each with one or two of `n_labels` labels drawn at random."""
    rng = np.random.default_rng(seed)
    vocab = [f"label{i:02d}" for i in range(n_labels)]
    specs = []
    for i in range(n):
        labels = sorted({vocab[j] for j in rng.integers(0, n_labels, int(rng.integers(1, 3)))})
        specs.append(SampleSpec(f"s{i:03d}", labels[0], b"", meta={"labels": labels}))
    return specs


def test_val_and_test_get_the_asked_number_of_groups_with_rare_labels():
    samples = _rare_label_samples()
    for seed in (0, 1, 2):
        build = BuildConfig(val_fraction=0.2, test_fraction=0.2, seed=seed)
        splits = split_samples(samples, build)
        sizes = {name: len(rows) for name, rows in splits.items()}
        assert sizes == {"train": 24, "val": 8, "test": 8}, (seed, sizes)
        keys = [s.key for rows in splits.values() for s in rows]
        assert sorted(keys) == sorted(s.key for s in samples)  # every sample once
        again = split_samples(samples, build)  # deterministic for the seed
        assert {n: [s.key for s in r] for n, r in again.items()} == {n: [s.key for s in r] for n, r in splits.items()}
