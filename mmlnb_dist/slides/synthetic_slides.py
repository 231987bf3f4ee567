"""Synthetic whole-slide images: pyramidal tiled TIFFs that OpenSlide opens as `generic-tiff` with an mpp.

A slide is a grid of square cells: tissue cells hold synthetic H&E-like patches of the slide's one class
(`mmlnb_dist.data.synthetic.render_patch`), the rest is near-white glass, and an optional band of tissue cells
is Gaussian-blurred (an out-of-focus region that tile QC must reject as `blur`). Cells reuse a small pool of
rendered patches, and every pyramid level is composed from that pool downsampled, so a 40,000-pixel slide is
written tile by tile in seconds-to-minutes without ever being held in memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Tuple

import numpy as np

Renderer = Callable[..., np.ndarray]  # render(label, size, rng) -> uint8 (size, size, 3)


@dataclass
class SyntheticLayout:
    """Where tissue and blur are, in cells of `cell` level-0 pixels (row-major `[cy, cx]` arrays)."""

    width: int
    height: int
    cell: int
    mpp: float
    tissue: np.ndarray  # bool (ny, nx)
    blurred: np.ndarray  # bool (ny, nx), a subset of tissue

    def cell_of(self, x: int, y: int) -> Tuple[int, int]:
        """(cy, cx) of the cell holding level-0 point (x, y)."""
        return int(y // self.cell), int(x // self.cell)

    def region_of_tile(self, x: int, y: int, size0: int) -> str:
        """`tissue`, `blurred`, `background` or `mixed` for the level-0 square at (x, y)."""
        cy0, cx0 = self.cell_of(x, y)
        cy1, cx1 = self.cell_of(x + size0 - 1, y + size0 - 1)
        t = self.tissue[cy0:cy1 + 1, cx0:cx1 + 1]
        b = self.blurred[cy0:cy1 + 1, cx0:cx1 + 1]
        if b.all():
            return "blurred"
        if t.all() and not b.any():
            return "tissue"
        if not t.any():
            return "background"
        return "mixed"


def make_layout(width: int, height: int, cell: int, mpp: float, seed: int, blur: bool = True,
                tissue_radius: Tuple[float, float] = (0.36, 0.32)) -> SyntheticLayout:
    """An elliptic tissue section (seeded centre offset); the right-most fifth of it blurred if `blur`."""
    if width % cell or height % cell:
        raise ValueError(f"slide size {width}x{height} must be a multiple of the cell size {cell}")
    rng = np.random.default_rng(seed)
    nx, ny = width // cell, height // cell
    cx, cy = 0.5 + rng.uniform(-0.04, 0.04), 0.5 + rng.uniform(-0.04, 0.04)
    u = (np.arange(nx) + 0.5) / nx
    v = (np.arange(ny) + 0.5) / ny
    uu, vv = np.meshgrid(u, v)
    tissue = ((uu - cx) / tissue_radius[0]) ** 2 + ((vv - cy) / tissue_radius[1]) ** 2 <= 1.0
    blurred = tissue & (uu > cx + 0.6 * tissue_radius[0]) if blur else np.zeros_like(tissue)
    return SyntheticLayout(width, height, cell, mpp, tissue, blurred)


def _default_renderer(seed: int) -> Renderer:
    """The data set's `render_patch` with one random stain per slide (so colour alone is a weak cue)."""
    from functools import partial

    from ..data.synthetic import random_stain, render_patch

    return partial(render_patch, stain=random_stain(np.random.default_rng(seed + 3)))


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    # Glass is not perfectly white: a faint, slightly warm, noisy grey like a real scan.
    base = np.array([242, 241, 239], np.int16)
    noise = rng.integers(-3, 4, (size, size, 1), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _pyramid_pools(label: str, cell: int, downsamples: Sequence[int], pool_size: int, seed: int,
                   blur_sigma_um: float, mpp: float, render: Renderer):
    """Per level: (tissue patches, blurred patches, background) at that level's cell size."""
    import cv2

    rng = np.random.default_rng(seed + 1)
    tissue = [render(label, cell, rng) for _ in range(pool_size)]
    sigma = blur_sigma_um / mpp
    blurred = [cv2.GaussianBlur(p, (0, 0), sigma) for p in tissue]
    background = _background(cell, rng)
    pools = {}
    for ds in downsamples:
        side = cell // ds

        def down(img: np.ndarray) -> np.ndarray:
            return img if ds == 1 else cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)

        pools[ds] = ([down(p) for p in tissue], [down(p) for p in blurred], down(background))
    return pools


def _tiles(layout: SyntheticLayout, ds: int, tile: int, pools, assign: np.ndarray) -> Iterator[np.ndarray]:
    """Tiles of one level in row-major order, composed from the pooled cells."""
    tissue, blurred, background = pools[ds]
    cell = layout.cell // ds
    w, h = layout.width // ds, layout.height // ds
    for ty in range(0, h, tile):
        for tx in range(0, w, tile):
            out = np.full((tile, tile, 3), 255, np.uint8)
            for cy in range(ty // cell, min((ty + tile - 1) // cell, layout.tissue.shape[0] - 1) + 1):
                for cx in range(tx // cell, min((tx + tile - 1) // cell, layout.tissue.shape[1] - 1) + 1):
                    if layout.blurred[cy, cx]:
                        src = blurred[assign[cy, cx]]
                    elif layout.tissue[cy, cx]:
                        src = tissue[assign[cy, cx]]
                    else:
                        src = background
                    x0, y0 = cx * cell, cy * cell  # cell origin in level pixels
                    ix0, iy0 = max(x0, tx), max(y0, ty)
                    ix1, iy1 = min(x0 + cell, tx + tile, w), min(y0 + cell, ty + tile, h)
                    out[iy0 - ty:iy1 - ty, ix0 - tx:ix1 - tx] = src[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
            yield out


def synth_slide_seed(seed: int, class_index: int, k: int) -> int:
    """The seed of slide `k` of class `class_index` (0-2) in `slides synth --seed seed`, distinct for every triple.

    `seed*1000 + c*100 + k` collided once `--per-class` passed 100 (UD-100 was PD-0: same layout and stain) and
    across seeds past 700 slides. It is kept for k < 100, so those slides are unchanged; k >= 100 are numbered
    (Cantor pairing of seed and 3*(k-100)+c) into the values that formula never gives (n % 1000 >= 300).
    """
    if k < 100:
        return seed * 1000 + class_index * 100 + k
    b = 3 * (k - 100) + class_index
    pair = (seed + b) * (seed + b + 1) // 2 + b
    return 1000 * (pair // 700) + 300 + pair % 700


def write_synthetic_slide(path: Path, label: str, *, width: int = 4096, height: int = 4096, mpp: float = 0.5,
                          cell: int = 256, tile: int = 256, downsamples: Sequence[int] = (1, 4, 16),
                          seed: int = 0, blur: bool = True, blur_sigma_um: float = 2.0, pool_size: int = 8,
                          quality: int = 90, write_mpp: bool = True, tissue: bool = True,
                          render: Optional[Renderer] = None) -> SyntheticLayout:
    """Write a pyramidal JPEG-tiled TIFF of one class and return its layout (ground truth for tests).

    `write_mpp=False` leaves the resolution tags out (a slide that needs `--assume-mpp`); `tissue=False`
    writes an empty (glass only) slide.
    """
    import tifffile

    render = render or _default_renderer(seed)
    if any(cell % ds for ds in downsamples):
        raise ValueError(f"cell size {cell} must be divisible by every downsample {list(downsamples)}")
    layout = make_layout(width, height, cell, mpp, seed, blur)
    if not tissue:
        layout.tissue[:] = False
        layout.blurred[:] = False
    pools = _pyramid_pools(label, cell, downsamples, pool_size, seed, blur_sigma_um, mpp, render)
    assign = np.random.default_rng(seed + 2).integers(0, pool_size, layout.tissue.shape)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        for i, ds in enumerate(downsamples):
            extra = {}
            if write_mpp:
                # OpenSlide's generic-tiff reader turns X/YResolution in pixels per centimetre into mpp.
                extra = {"resolution": (1e4 / (mpp * ds), 1e4 / (mpp * ds)), "resolutionunit": "CENTIMETER"}
            tw.write(_tiles(layout, ds, tile, pools, assign), shape=(height // ds, width // ds, 3),
                     dtype=np.uint8, tile=(tile, tile), photometric="rgb", compression="jpeg",
                     compressionargs={"level": quality}, subfiletype=0 if i == 0 else 1, metadata=None, **extra)
    tmp.replace(path)
    return layout
