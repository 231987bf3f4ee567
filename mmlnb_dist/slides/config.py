"""Whole-slide tiling: resolution, tissue detection, sampling, tile QC, stain normalisation, parallelism."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..core.config import Section


# The coarsest level-0 resolution a scan has (a 0.5x overview); reader.PLAUSIBLE_MPP holds slide metadata to it.
MAX_SCAN_MPP = 20.0


class TissueConfig(Section):
    thumbnail_mpp: float = Field(8.0, gt=0.0)
    """Resolution (microns per pixel) of the thumbnail the tissue mask is computed on."""

    channel: Literal["saturation", "optical_density"] = "saturation"
    """Stain-aware channel thresholded for tissue: HSV saturation, or summed RGB optical density."""

    threshold: Optional[float] = Field(None, ge=0.0)
    """Fixed threshold on the channel (saturation 0-255, optical density 0-3); None: Otsu per slide."""

    min_otsu_threshold: float = Field(12.0, ge=0.0)
    """Lower bound on the Otsu saturation threshold, so a pale slide's background noise is not called tissue
    (on the optical-density channel: this / 255, and at least 0.12, above clean glass)."""

    closing_um: float = Field(32.0, ge=0.0)
    """Diameter in microns of the morphological closing that bridges small gaps inside tissue."""

    opening_um: float = Field(16.0, ge=0.0)
    """Diameter in microns of the morphological opening that removes specks and dust."""

    min_area_um2: float = Field(40000.0, ge=0.0)
    """Tissue regions (contours) smaller than this area in square microns are dropped."""

    min_hole_area_um2: float = Field(10000.0, ge=0.0)
    """Holes smaller than this are filled; larger holes stay holes in the mask and the GeoJSON."""

    @model_validator(mode="after")
    def _threshold_on_the_channel_scale(self) -> "TissueConfig":
        # tissue is `channel > threshold`: at or above the channel's largest value no slide has tissue, and each
        # read `no tissue found` (a saturation threshold kept when switching to optical_density, say)
        top = {"saturation": 255.0, "optical_density": math.log(256.0)}[self.channel]
        if self.threshold is not None and self.threshold >= top:
            scale = ("0-255" if self.channel == "saturation" else
                     f"0-{top:.2f}, tissue about 0.2-1.5: a saturation threshold (0-255) kept from channel=saturation?")
            raise ValueError(f"threshold {self.threshold:g} is at or above every value of channel={self.channel} "
                             f"({scale}): no pixel would be tissue")
        return self


class SamplingConfig(Section):
    mode: Literal["grid", "random"] = "grid"
    """`grid`: regular grid with `overlap`; `random`: seeded Poisson-disk tiles spread over the tissue."""

    overlap: float = Field(0.0, ge=0.0, lt=0.95)
    """Grid mode: fraction of the tile side shared by neighbouring tiles (0 = no overlap)."""

    min_distance: float = Field(1.0, gt=0.0)
    """Random mode: minimum distance between tile corners along x or y, as a multiple of the tile side (1 = no
    overlap)."""

    min_mask_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """A candidate tile is kept only if at least this share of it lies inside the tissue mask."""

    max_tiles_per_slide: Optional[int] = Field(200, ge=1)
    """Cap on kept tiles per slide (candidates are visited in seeded random order); None: no cap."""

    balance_classes: bool = False
    """Give every class the same total tile budget, split evenly over its slides (controlled sampling ratio)."""

    seed: int = Field(0, ge=0)
    """Seed of the candidate order and of random sampling; the same seed gives the same tiles."""

    @field_validator("overlap", mode="before")
    @classmethod
    def _a_fraction(cls, value):
        # other tilers (TRIDENT's --overlap) take pixels: 'less than 0.95' alone does not say what was wrong
        try:
            number = float(value) if not isinstance(value, bool) else 0.0
        except (TypeError, ValueError):
            return value  # the type check says what is wrong (a bool too)
        if number >= 1:
            raise ValueError(f"{number:g} is not a fraction of the tile side (0 = no overlap, below 0.95): an overlap "
                             f"in pixels? Give pixels / slides.tile_size, e.g. 32 px of a 256 px tile is 0.125")
        return value


class TileQCConfig(Section):
    min_tissue_fraction: float = Field(0.5, ge=0.0, le=1.0)
    """Reject (`background`) a tile whose share of tissue pixels (channel above the slide threshold) is lower."""

    min_blur: float = Field(40.0, ge=0.0)
    """Reject (`blur`) a tile whose variance of the Laplacian of its grey image is lower (out of focus)."""

    min_contrast: float = Field(12.0, ge=0.0)
    """Reject (`low_contrast`) a tile whose grey-level standard deviation is lower (washed out, faint stain)."""

    max_pen_fraction: float = Field(0.05, ge=0.0, le=1.0)
    """Reject (`pen`) a tile with more than this share of ink-coloured pixels (green, blue, black markers)."""


class StainConfig(Section):
    method: Literal["none", "macenko", "reinhard"] = "none"
    """Stain/contrast normalisation applied to kept tiles (torchstain, numpy backend)."""

    target: Optional[Path] = None
    """Target image; None: tiatoolbox's `data/target_image.png` if installed, else a region of the first slide."""

    @model_validator(mode="after")
    def _target_needs_a_method(self) -> "StainConfig":
        # method none never reads the target: tiles came out unnormalised without a word about the target given
        # (in a --config, a key=value or --stain-target alike; also caught by `config validate`)
        if self.target is not None and self.method == "none":
            raise ValueError(f"target {self.target} is set but method is none, so no tile would be normalised to "
                             f"it: set method macenko or reinhard (slides tile --stain macenko), or drop the target "
                             f"(no --stain-target; slides.stain.target=null over a --config's)")
        return self


class SlidesConfig(Section):
    mpp: Optional[float] = Field(0.5, gt=0.0)
    """Requested tile resolution in microns per pixel (ignored when `magnification` is set)."""

    magnification: Optional[float] = Field(None, gt=0.0)
    """Requested objective magnification (e.g. 20); converted with the slide's objective power."""

    assume_mpp: Optional[float] = Field(None, gt=0.0)
    """Level-0 microns per pixel for slides whose metadata carry no resolution (otherwise they are rejected); at
    most 20, as a scan's (a 40x scan is about 0.25)."""

    tile_size: int = Field(256, ge=16)
    """Tile side in pixels at the requested resolution."""

    tissue: TissueConfig = TissueConfig()
    """Tissue detection on a thumbnail."""

    sampling: SamplingConfig = SamplingConfig()
    """Which tiles are read."""

    qc: TileQCConfig = TileQCConfig()
    """Per-tile quality filters."""

    stain: StainConfig = StainConfig()
    """Stain normalisation."""

    mask_dir: Optional[Path] = None
    """Folder of corrected masks used instead of automatic tissue detection: `<slide_id>.geojson`, or the name a
    tiling exported in `<out>/qc/masks/` (`.` and spaces as `-`)."""

    workers: int = Field(1, ge=1)
    """Slides processed in parallel by a process pool (1: in this process)."""

    ray_address: Optional[str] = None
    """Ray cluster address (`auto`, HOST:PORT, `ray://host:10001`, or `local` for a fresh instance on this
    machine); set: one Ray task per slide instead of the pool."""

    stage_jpeg_quality: int = Field(95, ge=1, le=100)
    """JPEG quality of the tiles staged under `<out>.work/` before the shards are written."""

    qc_pictures: bool = True
    """Write a QC picture per slide (thumbnail, tissue outline, kept and rejected tiles)."""

    log_to_tracking: bool = False
    """Log the QC pictures and summary through the tracking logger (`tracking.*` backends)."""

    @field_validator("assume_mpp")
    @classmethod
    def _a_scan_resolution(cls, value: Optional[float]) -> Optional[float]:
        # the bound slide metadata is held to (reader.PLAUSIBLE_MPP): coarser, each tile is a few level-0 pixels
        # blown up to the tile size, and a large slide has hundreds of millions of candidate positions
        if value is not None and value > MAX_SCAN_MPP:
            raise ValueError(f"{value:g} um/px is not a scan's level-0 resolution (at most {MAX_SCAN_MPP:g}; a 40x "
                             f"scan is about 0.25 um/px, a 20x one 0.5): a magnification given as --assume-mpp?")
        return value

    @model_validator(mode="after")
    def _resolution_given(self) -> "SlidesConfig":
        if self.mpp is None and self.magnification is None:
            raise ValueError("set slides.mpp or slides.magnification (the tile resolution)")
        return self
