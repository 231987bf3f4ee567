"""Candidate tile positions over the tissue mask: a regular grid, or seeded Poisson-disk samples.

Positions are level-0 top-left corners of square tiles of `size0` level-0 pixels. The tissue share of each
candidate comes from an integral image of the thumbnail mask, so no pixel is read to reject background.
Candidates are returned in a seeded random visiting order: reading stops once the per-slide cap of kept tiles
is reached, and a random order spreads those tiles over the whole tissue instead of its top rows.
"""
from __future__ import annotations

import zlib
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from .config import SamplingConfig

Candidate = Tuple[int, int, float]  # x0, y0, mask fraction


def slide_rng(seed: int, slide_id: str) -> np.random.Generator:
    """A generator that depends on the seed and the slide only (not on worker order)."""
    return np.random.default_rng([seed, zlib.crc32(slide_id.encode())])


def mask_fractions(raster: np.ndarray, scale: float, xs: np.ndarray, ys: np.ndarray, size0: int) -> np.ndarray:
    """Share of each tile (level-0 corners `xs`, `ys`) inside the mask, from an integral image."""
    h, w = raster.shape
    integral = np.zeros((h + 1, w + 1), np.float64)
    integral[1:, 1:] = raster.astype(np.float64).cumsum(0).cumsum(1)
    x0 = np.clip(np.floor(xs / scale).astype(np.int64), 0, w - 1)
    y0 = np.clip(np.floor(ys / scale).astype(np.int64), 0, h - 1)
    # At least one mask pixel per tile, even when a tile is smaller than a mask pixel.
    x1 = np.clip(np.maximum(np.ceil((xs + size0) / scale).astype(np.int64), x0 + 1), 1, w)
    y1 = np.clip(np.maximum(np.ceil((ys + size0) / scale).astype(np.int64), y0 + 1), 1, h)
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return inside / ((x1 - x0) * (y1 - y0))


def grid_candidates(raster: np.ndarray, scale: float, dims: Tuple[int, int], size0: int,
                    cfg: SamplingConfig, rng: np.random.Generator) -> List[Candidate]:
    w0, h0 = dims
    if w0 < size0 or h0 < size0:  # no tile fits: (0, 0) would reach past the edge (counted by balanced quotas)
        return []
    stride = max(1, int(round(size0 * (1.0 - cfg.overlap))))
    xs = np.arange(0, w0 - size0 + 1, stride)
    ys = np.arange(0, h0 - size0 + 1, stride)
    gx, gy = np.meshgrid(xs, ys)
    gx, gy = gx.ravel(), gy.ravel()
    frac = mask_fractions(raster, scale, gx, gy, size0)
    keep = np.flatnonzero(frac >= max(cfg.min_mask_fraction, 1e-9))
    order = rng.permutation(len(keep))
    return [(int(gx[keep[i]]), int(gy[keep[i]]), float(frac[keep[i]])) for i in order]


def poisson_candidates(raster: np.ndarray, scale: float, dims: Tuple[int, int], size0: int,
                       cfg: SamplingConfig, rng: np.random.Generator, limit: Optional[int]) -> List[Candidate]:
    """Dart throwing over tissue pixels with a minimum corner distance (a spatial hash keeps it O(n)).

    The distance is along the farther axis (Chebyshev), so at `min_distance=1` no two tiles share a pixel: a
    Euclidean tile side let two tiles offset diagonally by (0.75, 0.75) sides share a corner square."""
    w0, h0 = dims
    radius = cfg.min_distance * size0
    cell = radius  # a cell holds one tile at most (closer than `radius` on both axes) and a clash is one cell away
    ty, tx = np.nonzero(raster)
    if len(tx) == 0 or w0 < size0 or h0 < size0:
        return []
    capacity = int(raster.sum() * scale * scale / (radius * radius)) + 1
    attempts = min(30 * capacity + 100, 500_000)
    pick = rng.integers(0, len(tx), attempts)
    jitter = rng.random((attempts, 2))
    cx = (tx[pick] + jitter[:, 0]) * scale - size0 / 2.0
    cy = (ty[pick] + jitter[:, 1]) * scale - size0 / 2.0
    cx = np.clip(np.round(cx), 0, w0 - size0).astype(np.int64)
    cy = np.clip(np.round(cy), 0, h0 - size0).astype(np.int64)
    frac = mask_fractions(raster, scale, cx, cy, size0)
    grid: Dict[Tuple[int, int], Tuple[int, int]] = {}
    out: List[Candidate] = []
    for x, y, f in zip(cx.tolist(), cy.tolist(), frac.tolist()):
        if f < cfg.min_mask_fraction:
            continue
        gi, gj = int(x // cell), int(y // cell)
        near = (grid.get((gi + di, gj + dj)) for di in (-1, 0, 1) for dj in (-1, 0, 1))
        if any(o is not None and max(abs(o[0] - x), abs(o[1] - y)) < radius for o in near):
            continue
        grid[(gi, gj)] = (x, y)
        out.append((x, y, f))
        if limit is not None and len(out) >= limit:
            break
    return out


def candidates(raster: np.ndarray, scale: float, dims: Tuple[int, int], size0: int, cfg: SamplingConfig,
               slide_id: str, limit: Optional[int] = None) -> List[Candidate]:
    """Candidate tiles in visiting order (seeded by `cfg.seed` and the slide id)."""
    rng = slide_rng(cfg.seed, slide_id)
    if cfg.mode == "grid":
        return grid_candidates(raster, scale, dims, size0, cfg, rng)
    return poisson_candidates(raster, scale, dims, size0, cfg, rng, limit)


def balanced_quotas(candidate_counts: Mapping[str, int], labels: Mapping[str, str],
                    cap: Optional[int]) -> Dict[str, int]:
    """Per-slide tile quotas giving every class the same total (the paper's controlled sampling ratio).

    The class budget is the smallest class's total of available candidates (each slide's count capped at
    `cap`); each class spreads its budget evenly over its slides, handing a small slide's unused share to
    the others. QC rejections can still leave a class a little short: quotas bound kept tiles from above.
    A class with no candidate at all (`empty_classes`: glass only, or its one slide unreadable) is left out of
    the smallest-class rule, as a class with no slide is: it set every class's budget to 0, so no slide of any
    class kept a tile.
    """
    by_class: Dict[str, List[str]] = {}
    for sid in sorted(candidate_counts):
        by_class.setdefault(labels[sid], []).append(sid)
    avail = {sid: min(n, cap) if cap is not None else n for sid, n in candidate_counts.items()}
    totals = [sum(avail[s] for s in sids) for sids in by_class.values()]
    budget = min((t for t in totals if t > 0), default=0)
    quotas: Dict[str, int] = {}
    for sids in by_class.values():
        remaining, todo = budget, sorted(sids, key=lambda s: (avail[s], s))
        for i, sid in enumerate(todo):
            share = remaining // (len(todo) - i)
            quotas[sid] = min(avail[sid], share)
            remaining -= quotas[sid]
    return quotas


def empty_classes(candidate_counts: Mapping[str, int], labels: Mapping[str, str]) -> List[str]:
    """Classes none of whose slides has a candidate tile (left out of the balance: see `balanced_quotas`)."""
    totals: Dict[str, int] = {}
    for sid, n in candidate_counts.items():
        totals[labels[sid]] = totals.get(labels[sid], 0) + n
    return sorted(c for c, n in totals.items() if n == 0)


def zero_quota_notes(candidate_counts: Mapping[str, int], quotas: Mapping[str, int]) -> Dict[str, str]:
    """Why each slide with candidates got a balanced quota of 0 (it keeps no tile, which is reported as a
    problem: without the reason a user sees tissue on the QC picture and no tile in the shards)."""
    why = "the smallest class's budget is smaller than this class's number of slides"
    return {sid: f"tile quota 0 from slides.sampling.balance_classes: {why}"
            for sid, q in quotas.items() if q == 0 and candidate_counts.get(sid, 0) > 0}
