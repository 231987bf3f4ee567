"""Tissue detection on a thumbnail: threshold a stain-aware channel, clean up, keep large contours.

The mask is carried as polygons in level-0 coordinates (outer rings with their holes) so that it can be
written as GeoJSON, corrected in QuPath and read back; the raster used for sampling is always re-drawn from
those polygons, so an automatic mask and a corrected one follow the same path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .config import TissueConfig

# The lowest Otsu threshold on the optical-density channel: above clean glass as scanners image it (grey levels
# 230-250, OD 0.02-0.1, with noise). The saturation floor's share of its scale (min_otsu_threshold / 255, 0.047)
# is below glass, and on a blank slide Otsu splits the glass's noise: the whole slide became tissue. A pale stain
# (eosin at 225/190/215: OD 0.2) stays above it.
MIN_OTSU_OD = 0.12

Ring = np.ndarray  # (N, 2) float64 level-0 (x, y)


@dataclass
class TissuePolygon:
    """One tissue region: an outer ring and the holes inside it (level-0 coordinates)."""

    outer: Ring
    holes: List[Ring] = field(default_factory=list)


@dataclass
class TissueMask:
    """Tissue polygons plus their raster at thumbnail scale (`scale` level-0 pixels per mask pixel)."""

    polygons: List[TissuePolygon]
    raster: np.ndarray  # bool (h, w)
    scale: float
    threshold: float  # channel threshold used (for tile-level tissue fractions)
    channel: str

    @property
    def fraction(self) -> float:
        return float(self.raster.mean()) if self.raster.size else 0.0


def tissue_channel(rgb: np.ndarray, channel: str) -> np.ndarray:
    """The channel tissue is thresholded on: HSV saturation (0-255) or summed optical density (0-~3)."""
    import cv2

    if channel == "saturation":
        # Haematoxylin and eosin are saturated; glass, background and grey dust are not.
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32)
    od = -np.log((rgb.astype(np.float32) + 1.0) / 256.0)
    return od.sum(axis=-1) / 3.0


def structuring_disk(diameter_px: float) -> Optional[np.ndarray]:
    """An elliptic structuring element of about `diameter_px`, always of ODD size (None below 2 px).

    OpenCV anchors a kernel at (size // 2, size // 2) and applies the same unreflected kernel in dilation and
    erosion: with an even size the anchor is off-centre and each closing or opening moves the mask by up to
    half a kernel down and right (the default 32 um closing and 16 um opening at 8 um/px moved it 16 um). An
    odd size has a centred anchor and a symmetric disk, so the mask stays where the tissue is."""
    import cv2

    d = int(round(diameter_px))
    if d < 2:
        return None
    d += 1 - d % 2  # the next odd size
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d))


def threshold_channel(values: np.ndarray, cfg: TissueConfig) -> float:
    """Fixed threshold from config, else Otsu (bounded below for saturation so blank slides stay blank)."""
    if cfg.threshold is not None:
        return float(cfg.threshold)
    from skimage.filters import threshold_otsu

    if float(values.max()) == float(values.min()):
        return float(values.max()) + 1.0
    t = float(threshold_otsu(values))
    if cfg.channel == "saturation":
        t = max(t, cfg.min_otsu_threshold)
    else:
        t = max(t, cfg.min_otsu_threshold / 255.0, MIN_OTSU_OD)
    return t


def detect_tissue(thumb: np.ndarray, scale: float, mpp0: float, cfg: TissueConfig) -> TissueMask:
    """Tissue mask of a thumbnail (`scale` level-0 pixels per thumbnail pixel, level-0 `mpp0`)."""
    import cv2

    values = tissue_channel(thumb, cfg.channel)
    t = threshold_channel(values, cfg)
    mask = (values > t).astype(np.uint8)
    um_per_px = mpp0 * scale
    kernel = structuring_disk(cfg.closing_um / um_per_px)
    if kernel is not None:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    kernel = structuring_disk(cfg.opening_um / um_per_px)
    if kernel is not None:
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    px_area = um_per_px * um_per_px
    polygons = contours_to_polygons(
        mask, scale, min_area_px=cfg.min_area_um2 / px_area, min_hole_px=cfg.min_hole_area_um2 / px_area
    )
    raster = rasterize(polygons, mask.shape, scale)
    return TissueMask(polygons, raster, scale, t, cfg.channel)


def contours_to_polygons(mask: np.ndarray, scale: float, min_area_px: float,
                         min_hole_px: float) -> List[TissuePolygon]:
    """Outer contours with their holes (two-level hierarchy), small ones dropped, scaled to level 0."""
    import cv2

    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    polygons: List[TissuePolygon] = []
    if hierarchy is None:
        return polygons
    hierarchy = hierarchy[0]
    for i, contour in enumerate(contours):
        if hierarchy[i][3] != -1:  # a hole; handled with its parent
            continue
        if cv2.contourArea(contour) < min_area_px or len(contour) < 3:
            continue
        holes = []
        child = hierarchy[i][2]
        while child != -1:
            if cv2.contourArea(contours[child]) >= min_hole_px and len(contours[child]) >= 3:
                holes.append(_to_level0(contours[child], scale))
            child = hierarchy[child][0]
        polygons.append(TissuePolygon(_to_level0(contour, scale), holes))
    # Deterministic order (top-left first) so GeoJSON files are stable.
    polygons.sort(key=lambda p: (float(p.outer[:, 1].min()), float(p.outer[:, 0].min())))
    return polygons


def _to_level0(contour: np.ndarray, scale: float) -> Ring:
    # Contour points are pixel centres of the boundary; +0.5 maps them to the pixel-centre positions at level 0.
    return (contour[:, 0, :].astype(np.float64) + 0.5) * scale


def rasterize(polygons: Sequence[TissuePolygon], shape: Tuple[int, int], scale: float) -> np.ndarray:
    """Boolean raster (thumbnail scale) of polygons with holes: their union, whatever their order (a polygon's
    holes clear that polygon only, not another polygon drawn before it, such as an island inside a lumen)."""
    import cv2

    out = np.zeros(shape, np.uint8)
    for poly in polygons:
        layer = np.zeros(shape, np.uint8) if poly.holes else out
        cv2.fillPoly(layer, [np.round(poly.outer / scale - 0.5).astype(np.int32)], 1)
        for hole in poly.holes:
            cv2.fillPoly(layer, [np.round(hole / scale - 0.5).astype(np.int32)], 0)
        if layer is not out:
            out |= layer
    return out.astype(bool)


def mask_from_polygons(polygons: List[TissuePolygon], shape: Tuple[int, int], scale: float,
                       thumb: np.ndarray, cfg: TissueConfig) -> TissueMask:
    """A mask from given (e.g. corrected) polygons; the channel threshold still comes from the thumbnail."""
    values = tissue_channel(thumb, cfg.channel)
    return TissueMask(polygons, rasterize(polygons, shape, scale), scale, threshold_channel(values, cfg),
                      cfg.channel)
