"""`slides synth` seeded slide k of class c with `seed*1000 + c*100 + k`: past 100 slides per class UD-100 and
PD-0 had one seed (same tissue layout, same stain), and past 700 slides `--seed 0` repeated `--seed 1`'s slides.
Every (seed, class, slide) now has its own seed; the first 100 slides per class keep theirs."""
from __future__ import annotations

import numpy as np

from mmlnb_dist.slides.synthetic_slides import make_layout, synth_slide_seed


def test_every_synthetic_slide_has_its_own_seed_and_the_first_hundred_keep_theirs():
    seeds = {}
    for seed in range(3):
        for c in range(3):
            for k in range(800):
                seeds.setdefault(synth_slide_seed(seed, c, k), []).append((seed, c, k))
                if k < 100:
                    assert synth_slide_seed(seed, c, k) == seed * 1000 + c * 100 + k
    shared = {s: who for s, who in seeds.items() if len(who) > 1}
    assert not shared, list(shared.items())[:3]


def test_ud_100_and_pd_0_no_longer_share_a_layout():
    ud_100 = make_layout(4096, 4096, 256, 0.5, synth_slide_seed(0, 0, 100))
    pd_0 = make_layout(4096, 4096, 256, 0.5, synth_slide_seed(0, 1, 0))
    assert not (np.array_equal(ud_100.tissue, pd_0.tissue) and np.array_equal(ud_100.blurred, pd_0.blurred))
