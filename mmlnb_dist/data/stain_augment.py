"""Stain augmentation: random jitter of each slide-like image along the haematoxylin / eosin / DAB axes.

Why: slides from different labs (and the synthetic set's slides, each with its own stain) differ in stain hue
and intensity; a classifier that learns one slide's colour fails on a held-out slide. Perturbing the stain
concentrations of training images (Tellez et al. 2018, "Whole-slide mitosis detection in H&E breast histology
using PHH3 as a reference to train distilled stain-invariant convolutional networks") is the usual remedy.

The colour deconvolution is Ruifrok & Johnston's, with scikit-image's `rgb2hed` matrices and units (stain
concentration = optical density / -ln(1e-6)), but without `rgb2hed`'s clipping of negative concentrations, so
a zero-strength jitter returns the input unchanged. Per channel c: `hed[c] = hed[c] * alpha_c + beta_c` with
`alpha_c ~ U(1 - sigma, 1 + sigma)` and `beta_c ~ U(-bias, bias)`, drawn from the sample's own generator
(seeded by run seed, epoch and sample key: the same sample gets the same jitter in the same epoch on any rank
or worker).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from ..core.config import Section

# scikit-image's skimage.color.rgb_from_hed (Ruifrok & Johnston's H, E and DAB optical-density vectors, the
# third row being orthogonal to the first two); its inverse is skimage's hed_from_rgb.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
_LOG_ADJUST = -np.log(1e-6)  # skimage's unit: concentrations are optical densities divided by -ln(1e-6)
_MIN_RGB = 1e-6  # as skimage: avoids log(0); a black pixel comes back as 255e-6, i.e. 0 after rounding


class StainAugmentConfig(Section):
    kind: Literal["none", "hed"] = "none"
    """none: no stain augmentation; hed: random scale and shift of each haematoxylin / eosin / DAB concentration
    (colour deconvolution in scikit-image's rgb2hed units). Applied to training images only, and only while
    `data.loader.augment` is true (frozen-feature caching needs unaugmented inputs)."""

    sigma: float = Field(0.05, ge=0.0, lt=1.0)
    """Scale jitter: each stain's concentration is multiplied by a factor drawn from U(1 - sigma, 1 + sigma)."""

    bias: float = Field(0.01, ge=0.0, le=0.2)
    """Shift jitter: U(-bias, bias) is added to each stain's concentration (rgb2hed units: 0.01 is an optical
    density of about 0.14)."""


def rgb_to_hed(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB `[..., 3]` -> float64 H, E, DAB concentrations (scikit-image units, negatives kept)."""
    x = np.maximum(rgb.astype(np.float64) / 255.0, _MIN_RGB)
    return (np.log(x) / -_LOG_ADJUST) @ HED_FROM_RGB


def hed_to_rgb(hed: np.ndarray) -> np.ndarray:
    """Concentrations `[..., 3]` -> uint8 RGB (Beer-Lambert, rounded and clipped to 0..255)."""
    rgb = np.exp(-(hed * _LOG_ADJUST) @ RGB_FROM_HED)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def hed_jitter(rgb: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """`rgb` (uint8 `[H, W, 3]`) with each stain concentration c scaled by `alpha[c]` and shifted by `beta[c]`."""
    hed = rgb_to_hed(rgb) * np.asarray(alpha, np.float64) + np.asarray(beta, np.float64)
    return hed_to_rgb(hed)


class StainAugment:
    """The configured stain jitter as a callable `(uint8 image, generator) -> uint8 image` (picklable)."""

    def __init__(self, cfg: StainAugmentConfig):
        self.kind, self.sigma, self.bias = cfg.kind, float(cfg.sigma), float(cfg.bias)

    @property
    def active(self) -> bool:
        return self.kind != "none"

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.active:
            return rgb
        alpha = rng.uniform(1.0 - self.sigma, 1.0 + self.sigma, 3)
        beta = rng.uniform(-self.bias, self.bias, 3)
        return hed_jitter(rgb, alpha, beta)
