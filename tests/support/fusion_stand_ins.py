"""A stand-in encoder and the tiny fusion classifier built on two of them, for the fusion loop and training audits
(no tests here). The classifier only reads an encoder's `out_dim`; the stand-in encodes by taking the inputs' first
columns, so a test can count encoder passes, or refuse any pass where features are meant to be given."""
from __future__ import annotations

import torch
from torch import nn

from mmlnb_dist.recipes.fusion.config import FusionModelConfig
from mmlnb_dist.recipes.fusion.model import FusionClassifier

DIM_I, DIM_T = 6, 5


class StandInEncoder(nn.Module):
    """Counts the batches it encodes (`calls`); with `may_run=False` any pass fails the test instead."""

    def __init__(self, out_dim: int, may_run: bool = True):
        super().__init__()
        self.out_dim = out_dim
        self.may_run = may_run
        self.body = nn.Linear(out_dim, out_dim)
        self.calls = 0

    def forward(self, x, *args, **kwargs):
        if not self.may_run:
            raise AssertionError("the encoder ran although its features were given")
        self.calls += 1
        return x[:, :self.out_dim].float()


def stand_in_fusion(mode: str = "prmf", dropout: float = 0.3, seed: int = 0, may_run: bool = True) -> FusionClassifier:
    """A 3-class fusion classifier on stand-in encoders of widths DIM_I (image) and DIM_T (text), seeded."""
    torch.manual_seed(seed)
    return FusionClassifier(StandInEncoder(DIM_I, may_run), StandInEncoder(DIM_T, may_run),
                            FusionModelConfig(mode=mode, dropout=dropout), num_classes=3)


def feature_batches(sizes=(4, 3, 5)):
    """Seeded batches of precomputed features (widths DIM_I, DIM_T), keys `s0`, `s1`, ... and labels of 3 classes."""
    g = torch.Generator().manual_seed(0)
    out, k = [], 0
    for n in sizes:
        out.append({"key": [f"s{k + i}" for i in range(n)], "label": torch.randint(0, 3, (n,), generator=g),
                    "image_features": torch.randn(n, DIM_I, generator=g),
                    "text_features": torch.randn(n, DIM_T, generator=g)})
        k += n
    return out
