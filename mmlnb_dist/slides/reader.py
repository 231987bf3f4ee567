"""Reading whole-slide images through OpenSlide at a requested physical resolution.

A tile at `target_mpp` is read from the pyramid level with the largest downsample that is still at least as
fine as needed, then resized: reading a 5x tile from level 0 of a 40x slide would decode 64x the pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .config import MAX_SCAN_MPP


class SlideError(Exception):
    """A slide cannot be used (unreadable, truncated, no resolution); the message names the slide."""


@dataclass(frozen=True)
class Resolution:
    """The requested tile resolution: microns per pixel, or an objective magnification."""

    mpp: Optional[float] = None
    magnification: Optional[float] = None


# Level-0 resolutions a slide scan can have: 0.05 um/px is beyond any objective, 20 um/px a 0.5x overview. Outside
# it the tag is not a scan resolution: a TIFF written at 72 dpi reads as 352.78 um/px, which would tile 1-pixel
# squares blown up to the tile size (millions of candidates, no usable tile).
PLAUSIBLE_MPP = (0.05, MAX_SCAN_MPP)
# Pixels whose x and y sizes differ by more than this are not square: tiles square in level-0 pixels would be
# stretched. Within it, the difference is scanner calibration rounding and the mean is used.
MAX_ANISOTROPY = 0.10
# The most level pixels the thumbnail reads at once (256 Mpx: 1 GiB of RGBA), in bands of rows beyond.
THUMBNAIL_READ_PIXELS = 1 << 28


def resolve_mpp(properties, assume_mpp: Optional[float]) -> Tuple[float, str, Optional[str]]:
    """Level-0 microns per pixel from OpenSlide properties: `(mpp, source, note)`. `assume_mpp` stands in for a
    missing or unusable (implausible, anisotropic) value; `note` then says what it replaced."""
    try:
        mpp_x = float(properties.get("openslide.mpp-x", "nan"))
        mpp_y = float(properties.get("openslide.mpp-y", mpp_x))
    except ValueError:
        mpp_x = mpp_y = float("nan")
    if not (np.isfinite(mpp_y) and mpp_y > 0):
        mpp_y = mpp_x
    if not (np.isfinite(mpp_x) and mpp_x > 0):  # one axis given (or usable): square pixels of that size
        mpp_x = mpp_y
    if np.isfinite(mpp_x) and mpp_x > 0:
        problem = _mpp_problem(mpp_x, mpp_y)
        if problem is None:
            return (mpp_x + mpp_y) / 2.0, "metadata", None
        if assume_mpp is not None:
            return float(assume_mpp), "assumed", f"{problem}; --assume-mpp {assume_mpp:g} used instead"
        raise SlideError(f"{problem}; if the scan's resolution is known, pass it as --assume-mpp (used for every "
                         f"slide whose resolution metadata is missing or unusable)")
    if assume_mpp is not None:
        return float(assume_mpp), "assumed", None
    raise SlideError("no resolution in the slide metadata (openslide.mpp-x, openslide.mpp-y); pass --assume-mpp")


def _mpp_problem(mpp_x: float, mpp_y: float) -> Optional[str]:
    """Why the metadata resolution cannot be used, or None."""
    lo, hi = PLAUSIBLE_MPP
    for value in {mpp_x, mpp_y}:
        if not lo <= value <= hi:
            dpi = (f"; {value:.5g} is what a TIFF tagged in dpi, not a scan resolution, reads as" if value > hi
                   else "")  # (a dpi tag reads as 25400/dpi um/px: coarse, never below the range)
            return (f"implausible level-0 resolution {value:.5g} um/px in the slide metadata (a scan is {lo:g}-"
                    f"{hi:g} um/px{dpi})")
    if abs(mpp_x - mpp_y) > MAX_ANISOTROPY * min(mpp_x, mpp_y):
        return (f"pixels are not square: mpp-x {mpp_x:.5g} and mpp-y {mpp_y:.5g} um/px differ by more than "
                f"{MAX_ANISOTROPY:.0%} (square tiles would be stretched)")
    return None


def objective_power(properties) -> Tuple[Optional[float], Optional[str]]:
    """The scan's objective power, and a note when there is none or the metadata's value is no magnification (0,
    negative, not a number): it is then ignored as a missing one is (a power of 0 gave tiles of 0 um/px, a run that
    never ended). A missing power gets the same note: --magnification then tiles at a guessed 10/M um/px, which
    was said only for a bad value, so a slide scanned at another scale was tiled at the wrong one silently."""
    text = properties.get("openslide.objective-power")
    guess = "--magnification M tiles at 10/M um/px (the usual 20x ~ 0.5 um/px); --mpp avoids the guess"
    if text in (None, ""):
        return None, f"no objective power in the slide metadata: {guess}"
    try:
        power = float(text)
    except ValueError:
        power = float("nan")
    if np.isfinite(power) and power > 0:
        return power, None
    return None, f"objective power {text!r} in the slide metadata is not a magnification: ignored, so {guess}"


TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # little/big-endian TIFF and BigTIFF
TIFF_BASED = (".tif", ".tiff", ".svs", ".ndpi", ".scn", ".bif")


def _format_hint(path: Path) -> str:
    """What is wrong with a file OpenSlide does not open (its own message reads as a missing file): empty, not a
    TIFF though named as one, cut short (an interrupted copy), or an image program's plain, untiled TIFF. Each
    used to get the plain-TIFF hint, which sent users converting a file that was a renamed or truncated copy."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return ""
    if size == 0:
        return " (the file is empty, 0 bytes: an interrupted copy or download? copy it again)"
    suffix = path.suffix.lower()
    if suffix not in TIFF_BASED:
        return ""
    if head not in TIFF_MAGIC:
        return (f" (not a TIFF file, as a {suffix} slide is: it starts with {head!r}; another kind of file under "
                f"this name, or a damaged copy)")
    cut = _tiff_cut_short(path, size)
    if cut or suffix not in (".tif", ".tiff"):
        return cut
    convert = f"vips tiffsave {path.name} {path.stem}-pyramid.tif --tile --pyramid --compression jpeg"
    return (f" (OpenSlide reads a TIFF that is tiled, as a scanner's or a pyramidal TIFF is; an image program's "
            f"plain TIFF is not: convert it, e.g. `{convert}`, and set its resolution or pass --assume-mpp)")


def _tiff_cut_short(path: Path, size: int) -> str:
    """A hint when the TIFF's image data runs past its end (a copy cut short), else ''."""
    import logging

    try:
        import tifffile
    except ImportError:
        return ""
    quiet = logging.getLogger("tifffile")  # it logs each page offset past the end; the hint says it once
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        with tifffile.TiffFile(path) as tif:
            end = max((int(o) + int(n) for page in tif.pages for o, n in zip(page.dataoffsets, page.databytecounts)),
                      default=0)
    except Exception:
        return " (a TIFF whose structure cannot be read: damaged or cut short? copy it again)"
    finally:
        quiet.setLevel(level)
    if end <= size:
        return ""
    return (f" (the file is cut short: {size:,} bytes, but its image data runs to byte {end:,}: an interrupted "
            f"copy? copy it again)")


class SlideReader:
    """An open slide with its id, level-0 resolution and a `read_tile` at any resolution.

    Holds an OpenSlide handle: create one per process (handles are not picklable).
    """

    def __init__(self, path: Path, slide_id: Optional[str] = None, assume_mpp: Optional[float] = None):
        import openslide

        self.path = Path(path)
        self.slide_id = slide_id or self.path.stem
        try:
            self._slide = openslide.OpenSlide(str(self.path))
            # Touch the smallest level: a truncated file often opens but fails on the first decode.
            self._slide.read_region((0, 0), self._slide.level_count - 1, (1, 1))
        except openslide.OpenSlideUnsupportedFormatError as err:  # "Unsupported or missing image file"
            raise SlideError(f"cannot read slide {self.path.name}: {err}{_format_hint(self.path)}") from None
        except Exception as err:  # OpenSlideError, OSError
            raise SlideError(f"cannot read slide {self.path.name}: {err}") from None
        self.mpp, self.mpp_source, self.mpp_note = resolve_mpp(self._slide.properties, assume_mpp)
        self.dimensions: Tuple[int, int] = self._slide.dimensions
        self.level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        self.level_dimensions = tuple(self._slide.level_dimensions)
        self.objective_power, self.power_note = objective_power(self._slide.properties)
        self.vendor = self._slide.properties.get("openslide.vendor", "unknown")

    def close(self) -> None:
        self._slide.close()

    def __enter__(self) -> "SlideReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def target_mpp(self, resolution: Resolution) -> float:
        """Microns per pixel of tiles at the requested resolution."""
        if resolution.magnification is not None:
            if self.objective_power is None:
                # mpp 10/magnification is the usual convention (20x ~ 0.5 um/px) when power is unknown.
                return 10.0 / resolution.magnification
            return self.mpp * self.objective_power / resolution.magnification
        assert resolution.mpp is not None
        return float(resolution.mpp)

    def best_level(self, downsample: float) -> int:
        """The level with the largest downsample <= `downsample` (a small tolerance absorbs rounding)."""
        best = 0
        for level, ds in enumerate(self.level_downsamples):
            if ds <= downsample * 1.01:
                best = level
        return best

    def read_level0_rect(self, x: int, y: int, w: int, h: int, level: int) -> np.ndarray:
        """RGB uint8 of the level-0 rectangle `(x, y, w, h)` read at `level` (not resized)."""
        ds = self.level_downsamples[level]
        size = (max(1, int(round(w / ds))), max(1, int(round(h / ds))))
        from ..data.images import composite_on_white

        try:
            rgba = np.asarray(self._slide.read_region((int(x), int(y)), level, size))
        except Exception as err:
            raise SlideError(f"cannot read region of slide {self.path.name} at ({x}, {y}): {err}") from None
        return composite_on_white(rgba)

    def read_tile(self, x: int, y: int, size0: int, out_size: int, level: int) -> np.ndarray:
        """A square tile of `size0` level-0 pixels at `(x, y)`, read at `level`, resized to `out_size`."""
        img = self.read_level0_rect(x, y, size0, size0, level)
        if img.shape[0] != out_size or img.shape[1] != out_size:
            import cv2

            img = cv2.resize(img, (out_size, out_size), interpolation=cv2.INTER_AREA)
        return img

    def thumbnail(self, mpp: float) -> Tuple[np.ndarray, float]:
        """An RGB image at about `mpp` microns per pixel and its exact scale (level-0 pixels per pixel)."""
        import cv2

        want = max(1.0, mpp / self.mpp)
        level = self.best_level(want)
        w0, h0 = self.dimensions
        out_w = max(1, int(round(w0 / want)))
        # One scale for both axes, the one returned (masks and tiles map rows and columns back with it): the height
        # rounded on its own gave rows another scale, which slid a tall slide's mask down by thumbnail pixels.
        # The last row may reach under half a pixel past the slide (read as white) or stop as much short of it.
        scale = w0 / out_w
        out_h = max(1, int(round(h0 / scale)))
        ds = self.level_downsamples[level]
        # in bands of output rows: a slide without a pyramid would be read whole at level 0 (width x height x 4 bytes)
        rows = max(1, int(THUMBNAIL_READ_PIXELS / max(1.0, (w0 / ds) * (h0 / ds)) * out_h))
        bands = []
        for j0 in range(0, out_h, rows):
            j1 = min(out_h, j0 + rows)
            y0, y1 = int(round(j0 * scale)), int(round(j1 * scale))
            img = self.read_level0_rect(0, y0, w0, y1 - y0, level)
            if (out_w, j1 - j0) != (img.shape[1], img.shape[0]):
                img = cv2.resize(img, (out_w, j1 - j0), interpolation=cv2.INTER_AREA)
            bands.append(img)
        return (bands[0] if len(bands) == 1 else np.concatenate(bands)), scale
