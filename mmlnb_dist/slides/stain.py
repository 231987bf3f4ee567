"""Stain / contrast normalisation of tiles against a target image (torchstain, numpy backend).

torchstain is maintained and small; its numpy normalisers avoid a torch round trip per tile. Macenko needs
enough stained pixels to estimate the stain vectors: on a tile where it fails (mostly background), the tile
is kept unnormalised and its meta says so, rather than losing the tile or the slide.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

TIATOOLBOX_TARGET = ("tiatoolbox", "data/target_image.png")


def default_target_path() -> Optional[Path]:
    """tiatoolbox's sample target image if that package is installed (no import: it pulls heavy deps)."""
    import importlib.util

    spec = importlib.util.find_spec(TIATOOLBOX_TARGET[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / TIATOOLBOX_TARGET[1]
    return path if path.is_file() else None


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    from ..data.images import to_rgb

    with Image.open(path) as im:
        return np.asarray(to_rgb(im))


class StainNormalizer:
    """`method` in none / macenko / reinhard, fitted once on `target` (RGB uint8)."""

    def __init__(self, method: str, target: Optional[np.ndarray] = None):
        self.method = method
        self._norm = None
        if method == "none":
            return
        if target is None:
            raise ValueError(f"stain method {method!r} needs a target image")
        from torchstain.numpy.normalizers import NumpyMacenkoNormalizer, NumpyReinhardNormalizer

        self._norm = NumpyMacenkoNormalizer() if method == "macenko" else NumpyReinhardNormalizer()
        self._norm.fit(np.ascontiguousarray(target[..., :3]))

    def __call__(self, rgb: np.ndarray) -> Tuple[np.ndarray, str]:
        """The normalised tile and the normalisation actually applied (for the tile's provenance)."""
        if self._norm is None:
            return rgb, "none"
        try:
            with np.errstate(all="ignore"):
                if self.method == "macenko":
                    out = self._norm.normalize(I=rgb, stains=False)[0]
                else:
                    out = self._norm.normalize(rgb)
            out = np.asarray(out)
            if out.shape != rgb.shape or not np.isfinite(out.astype(np.float64)).all():
                raise ValueError("bad output")
            return np.clip(out, 0, 255).astype(np.uint8), self.method
        except Exception:  # singular stain matrix on a near-empty tile
            return rgb, f"{self.method}-failed:none"
