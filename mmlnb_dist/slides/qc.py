"""Per-tile quality scores and the first filter each tile fails (its rejection reason).

Scores: tissue fraction (pixels above the slide's tissue threshold on the same channel as the mask), blur
(variance of the Laplacian of the grey image: sharp nuclei edges give a high variance), contrast (grey-level
standard deviation) and pen fraction (ink hues that H&E never has: green/blue marker, or near-black and colourless).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from .config import TileQCConfig
from .tissue import tissue_channel

REASONS = ("background", "pen", "blur", "low_contrast")


def tile_scores(rgb: np.ndarray, threshold: float, channel: str) -> Dict[str, float]:
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # hue in 0-179
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    # H&E hues are pink/purple (hue < 15 or > 120 on OpenCV's 0-179 scale); marker ink is green/blue (35-115)
    # and strongly saturated, or black: very dark and colourless. Dark alone is not ink: the nuclei of a heavily
    # stained section are as dark, but saturated purple (every dark pixel counted made cellular tiles `pen`).
    # Both thresholds are loose on purpose: only obvious ink.
    ink = ((hue >= 35) & (hue <= 115) & (sat > 90) & (val < 220)) | ((val < 40) & (sat < 100))
    values = sat if channel == "saturation" else tissue_channel(rgb, channel)  # reuse the HSV conversion
    return {
        "tissue_fraction": float((values > threshold).mean()),
        "blur": float(cv2.Laplacian(grey, cv2.CV_64F).var()),
        "contrast": float(grey.std()),
        "pen_fraction": float(ink.mean()),
    }


def rejection_reason(scores: Dict[str, float], cfg: TileQCConfig) -> Optional[str]:
    """The first failed filter in `REASONS` order, or None for a kept tile."""
    if scores["tissue_fraction"] < cfg.min_tissue_fraction:
        return "background"
    if scores["pen_fraction"] > cfg.max_pen_fraction:
        return "pen"
    if scores["blur"] < cfg.min_blur:
        return "blur"
    if scores["contrast"] < cfg.min_contrast:
        return "low_contrast"
    return None


def check_tile(rgb: np.ndarray, threshold: float, channel: str,
               cfg: TileQCConfig) -> Tuple[Dict[str, float], Optional[str]]:
    scores = tile_scores(rgb, threshold, channel)
    return scores, rejection_reason(scores, cfg)
