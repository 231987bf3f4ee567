"""One slide from file to staged tiles: the unit of work a pool process or a Ray task runs.

Everything a slide produces is written to `<work>/slides/<slide_id>.tmp/` and renamed to `<slide_id>/` when
complete, so the presence of `<slide_id>/result.json` is the completed-slides record and a kill mid-slide
leaves nothing that a rerun would trust.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from .config import SlidesConfig
from .identity import slide_identity
from .inputs import TilingInputError, safe_key
from .qc import REASONS, check_tile
from .reader import Resolution, SlideError, SlideReader
from .sampling import candidates
from .tissue import TissueMask, detect_tissue, mask_from_polygons

log = logging.getLogger(__name__)

# Part of every staged slide's fingerprint: raise it with any change to how the tiles of unchanged inputs and
# options come out (tissue mask, sampling, QC), so a resume after an upgrade re-tiles instead of reusing slides
# staged by the old code. 2: the thumbnail aspect scale, blank-glass OD floor and random-tile spacing fixes.
TILING_VERSION = 2

RESULT = "result.json"
TILES = "tiles.jsonl"
REJECTED = "rejected.jsonl"  # every QC-rejected tile with its reason and scores (an audit trail)


@dataclass
class SlideJob:
    """Everything one slide needs; picklable (sent to pool processes and Ray tasks)."""

    slide_id: str
    path: Path
    label: str
    cfg: SlidesConfig
    work_dir: Path
    fingerprint: str
    quota: Optional[int] = None
    mask_path: Optional[Path] = None
    normalizer: Any = None  # a fitted StainNormalizer (fitted once by the driver, not once per slide)
    quota_note: Optional[str] = None  # why `quota` is 0 (balanced sampling), for the slide's error message


def fingerprint(cfg: SlidesConfig, path: Path, quota: Optional[int], target: Optional[np.ndarray],
                mask_path: Optional[Path]) -> str:
    """What a staged slide depends on; a changed option or input re-runs that slide on resume. Not its label: no
    tile depends on it (a class's balanced quota is `quota`), and a corrected label only relabels the reused slide."""
    # (not `assume_mpp`: it changes only the slides without a usable resolution of their own, and `reusable`
    # checks those; in here, adding it on a rerun re-tiled every slide)
    options = cfg.model_dump(mode="json", exclude={"workers", "ray_address", "log_to_tracking", "qc_pictures",
                                                   "mask_dir", "assume_mpp"})
    h = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    h.update(f"{slide_identity(path)}|{quota}|v{TILING_VERSION}".encode())  # not name + size: slides/identity.py
    if target is not None:
        h.update(np.ascontiguousarray(target).tobytes())
    if mask_path is not None and Path(mask_path).is_file():
        h.update(Path(mask_path).read_bytes())
    return h.hexdigest()[:16]


def load_result(work_dir: Path, slide_id: str) -> Optional[Dict[str, Any]]:
    path = Path(work_dir) / "slides" / safe_key(slide_id) / RESULT
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def reusable(work: Path, slide_id: str, previous: Optional[Dict[str, Any]], fp: str, cfg: SlidesConfig) -> bool:
    """Whether a slide staged by an earlier run stands for this run: the same fingerprint, every staged tile still
    there, a QC picture when pictures are asked for now (else tiled again, to the same tiles, for it), and, for a
    slide tiled at an assumed level-0 resolution, the same `--assume-mpp` now (a slide with its own resolution is
    tiled the same whatever `--assume-mpp` says)."""
    if previous is None or previous.get("fingerprint") != fp or not _staged_whole(work, slide_id, previous):
        return False
    if cfg.qc_pictures and not (Path(work) / "slides" / safe_key(slide_id) / "qc.png").is_file():
        return False
    if previous.get("mpp_source") == "assumed":
        return cfg.assume_mpp is not None and float(cfg.assume_mpp) == previous.get("level0_mpp")
    return True


def _staged_whole(work: Path, slide_id: str, previous: Dict[str, Any]) -> bool:
    """Whether every tile a completed slide staged is still there (else it is tiled again, said so)."""
    if previous.get("status") != "ok":
        return True
    slide_dir = work / "slides" / safe_key(slide_id)
    try:
        keys = [json.loads(line)["key"] for line in (slide_dir / TILES).read_text().splitlines() if line.strip()]
        missing = sum(not (slide_dir / "tiles" / f"{k}.jpg").is_file() for k in keys)
    except (OSError, ValueError, KeyError, TypeError):
        keys, missing = [], -1
    if missing:
        log.warning("slide %s: %s in %s: tiled again", slide_id, "its tile index is unreadable" if missing < 0
                    else f"{missing} of {len(keys)} staged tile(s) are missing", slide_dir)
    return not missing


def slide_mask(reader: SlideReader, cfg: SlidesConfig, mask_path: Optional[Path] = None,
               warnings: Optional[List[str]] = None) -> tuple:
    """Thumbnail, and the tissue mask (from the GeoJSON `mask_path` when given, else detected); a warning about
    the mask file goes to `warnings` when given, else to the log."""
    from .geojson import read_geojson

    thumb, scale = reader.thumbnail(cfg.tissue.thumbnail_mpp)
    if mask_path is not None:
        mask = mask_from_polygons(read_geojson(mask_path, warnings), thumb.shape[:2], scale, thumb, cfg.tissue)
    else:
        mask = detect_tissue(thumb, scale, reader.mpp, cfg.tissue)
    return thumb, mask


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality, optimize=False, progressive=False)
    return buf.getvalue()


def process_slide(job: SlideJob) -> Dict[str, Any]:
    """Tile one slide into `<work>/slides/<id>/`; returns its result record (never raises for bad input)."""
    from .geojson import write_geojson
    from .stain import StainNormalizer

    start = time.perf_counter()
    cfg = job.cfg
    final = Path(job.work_dir) / "slides" / safe_key(job.slide_id)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "tiles").mkdir(parents=True)
    result: Dict[str, Any] = {"slide_id": job.slide_id, "label": job.label, "file": Path(job.path).name,
                              "fingerprint": job.fingerprint, "status": "ok", "error": None, "candidates": 0,
                              "kept": 0, "rejected": {r: 0 for r in REASONS}}
    try:
        with SlideReader(job.path, job.slide_id, cfg.assume_mpp) as reader:
            target_mpp = reader.target_mpp(Resolution(cfg.mpp, cfg.magnification))
            size0 = max(1, int(round(cfg.tile_size * target_mpp / reader.mpp)))
            level = reader.best_level(target_mpp / reader.mpp)
            mask_notes: List[str] = []
            thumb, mask = slide_mask(reader, cfg, job.mask_path, mask_notes)
            write_geojson(tmp / "mask.geojson", mask.polygons, job.slide_id)
            result.update(level0_mpp=reader.mpp, mpp_source=reader.mpp_source, mpp=target_mpp, level=level,
                          size0=size0, tissue_fraction=mask.fraction, dimensions=list(reader.dimensions))
            # Recorded, not logged here: a pool or Ray worker's log goes nowhere the user looks; the driver logs them.
            power_note = reader.power_note if cfg.magnification is not None else None
            warnings = [w for w in (reader.mpp_note, power_note, upsampling_note(reader.mpp, target_mpp),
                                    *mask_notes, _mask_extent_note(job.mask_path, mask, reader.dimensions)) if w]
            if warnings:
                result["warnings"] = warnings
            quota = job.quota if job.quota is not None else cfg.sampling.max_tiles_per_slide
            # Every position, not a multiple of the quota: QC may reject most of them, and the count is reported.
            w0, h0 = reader.dimensions
            fits = w0 >= size0 and h0 >= size0  # else grid sampling read one tile past the edge, padded white
            cands = candidates(mask.raster, mask.scale, reader.dimensions, size0, cfg.sampling,
                               job.slide_id) if fits else []
            result["candidates"] = len(cands)
            if not fits:
                result.update(status="no_tiles", error=f"the slide ({w0} x {h0} px at level 0) is smaller than one "
                              f"tile ({size0} px at level 0: slides.tile_size={cfg.tile_size} at slides.mpp="
                              f"{target_mpp})")
            elif not mask.polygons or not cands:
                result.update(status="no_tissue", error=_no_tissue_reason(job.mask_path, mask, (w0, h0)))
                if job.mask_path is None and not mask.polygons:
                    result["error"] += _colourless_hint(thumb, cfg)
            normalizer = job.normalizer or StainNormalizer("none")
            boxes = _tile_loop(reader, job, cands, quota, size0, level, target_mpp, mask, normalizer, tmp, result)
            if result["status"] == "ok" and result["kept"] == 0:
                result.update(status="no_tiles", error=_no_tile_reason(job, quota, result))
        if cfg.qc_pictures:
            from .report import qc_picture

            qc_picture(thumb, mask, boxes, size0, tmp / "qc.png")
    except SlideError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        return {**result, "status": "failed", "error": str(err), "seconds": time.perf_counter() - start}
    except Exception as err:  # a decoder crash mid-slide must not stop the other slides
        shutil.rmtree(tmp, ignore_errors=True)
        return {**result, "status": "failed", "error": f"{type(err).__name__}: {err}",
                "seconds": time.perf_counter() - start}
    result["seconds"] = round(time.perf_counter() - start, 3)
    (tmp / RESULT).write_text(json.dumps(result, indent=1, sort_keys=True))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return result


MAX_UPSAMPLING = 2.0
"""Tiles at most this much finer than the scan (40x asked of a 20x scan). Beyond, a tile covers a few scan pixels
(`--mpp 0.005` on a 0.25 um/px scan: 5 px blown up 50x): no detail gained, millions of candidates, memory gone."""


def refuse_upsampling(cfg: SlidesConfig, slides: Mapping[str, Tuple[Path, str]]) -> None:
    """Refuse, before any slide is tiled, a tile resolution more than `MAX_UPSAMPLING` times finer than a slide's
    scan, naming the slide, its resolution and the request. An unreadable slide is left to its own record."""
    for sid, (path, _) in slides.items():
        try:
            with SlideReader(path, sid, cfg.assume_mpp) as reader:
                target, level0 = reader.target_mpp(Resolution(cfg.mpp, cfg.magnification)), reader.mpp
        except SlideError:
            continue
        factor = level0 / target
        if factor > MAX_UPSAMPLING * 1.01:  # (1%: rounding of the metadata)
            asked = (f"--magnification {cfg.magnification:g} ({target:.4g} um/px on this scan)"
                     if cfg.magnification is not None else f"--mpp {target:.4g} um/px")
            raise TilingInputError(
                f"slide '{sid}' ({Path(path).name}) is scanned at {level0:.4g} um/px; {asked} asks for tiles "
                f"{factor:.3g}x finer than the scan: no detail gained (a {cfg.tile_size} px tile would be "
                f"{max(1, round(cfg.tile_size / factor))} scan pixels blown up) and {factor ** 2:,.0f}x the "
                f"candidates of tiles at the scan's resolution. At most {MAX_UPSAMPLING:g}x finer is tiled: ask --mpp "
                f"{level0 / MAX_UPSAMPLING:.4g} or coarser")


def upsampling_note(level0_mpp: float, target_mpp: float) -> Optional[str]:
    """A warning when tiles are asked finer than the scan (made, as asked: a model may want that input size)."""
    if target_mpp >= level0_mpp * 0.99:  # (1%: rounding of the metadata)
        return None
    return (f"tiles at {target_mpp:.4g} um/px are finer than the scan ({level0_mpp:.4g} um/px): upsampled "
            f"{level0_mpp / target_mpp:.3g}x, with no detail gained (--mpp {level0_mpp:.4g} or coarser avoids it)")


def _colourless_hint(thumb: np.ndarray, cfg: SlidesConfig) -> str:
    """For a slide with no tissue found on the saturation channel: a hint when it has no colour (a greyscale scan)
    but dark regions, which the optical-density channel finds; else nothing."""
    from .stain import STAINED_OD
    from .tissue import tissue_channel

    if cfg.tissue.channel != "saturation" or cfg.tissue.threshold is not None or thumb.size == 0:
        return ""
    colourless = np.percentile(tissue_channel(thumb, "saturation"), 99) < cfg.tissue.min_otsu_threshold
    if not colourless or np.percentile(tissue_channel(thumb, "optical_density"), 99) < STAINED_OD:
        return ""
    return ("; the slide has no colour (a greyscale scan?) but dark regions: slides.tissue.channel=optical_density "
            "detects tissue by its darkness")


def _no_tissue_reason(mask_path: Optional[Path], mask: TissueMask, dims: tuple) -> str:
    """Why a slide has no candidate tile; a corrected mask's own problem names its file (it is not a detection
    that found nothing): no region in it, or every region outside the slide."""
    if mask_path is None:
        return "no tissue found" if not mask.polygons else "no tile fits inside the tissue"
    name = Path(mask_path).name
    if not mask.polygons:
        return (f"its mask {name} holds no tissue region (no Polygon or MultiPolygon annotation other than exclusions; "
                f"points, lines and detections are not regions)")
    w0, h0 = dims
    boxes = [(p.outer[:, 0].min(), p.outer[:, 1].min(), p.outer[:, 0].max(), p.outer[:, 1].max())
             for p in mask.polygons]
    if all(x1 <= 0 or y1 <= 0 or x0 >= w0 or y0 >= h0 for x0, y0, x1, y1 in boxes):
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
        return (f"the regions of its mask {name} (x {x0:.0f} to {x1:.0f}, y {y0:.0f} to {y1:.0f}) lie outside the "
                f"slide ({w0} x {h0} px at level 0): a mask of another slide, or coordinates not in level-0 pixels?")
    return "no tile fits inside the tissue"


def _mask_extent_note(mask_path: Optional[Path], mask: TissueMask, dims: tuple, slack: float = 0.1) -> Optional[str]:
    """A warning when a corrected mask's regions reach past the slide by more than `slack` of its size (a brush
    stroke over the edge does not): coordinates at another scale, or a mask of a larger slide."""
    if mask_path is None or not mask.polygons:
        return None
    pts = np.concatenate([p.outer for p in mask.polygons])
    (x0, y0), (x1, y1), (w0, h0) = pts.min(0), pts.max(0), dims
    if x0 >= -slack * w0 and y0 >= -slack * h0 and x1 <= (1 + slack) * w0 and y1 <= (1 + slack) * h0:
        return None
    if x1 <= 0 or y1 <= 0 or x0 >= w0 or y0 >= h0:  # wholly outside: the slide's error says so
        return None
    return (f"the regions of its mask {Path(mask_path).name} (x {x0:.0f} to {x1:.0f}, y {y0:.0f} to {y1:.0f}) reach "
            f"far past the slide ({w0} x {h0} px at level 0): coordinates not in this slide's level-0 pixels (another "
            f"level's or scan's scale)? Tiled where they overlap it")


def _no_tile_reason(job: SlideJob, quota: Optional[int], result: Dict[str, Any]) -> str:
    """Why a slide with tissue kept no tile: its quota, or QC (with the count per reason, to say which knob)."""
    if quota == 0:
        return job.quota_note or "tile quota 0"
    reasons = ", ".join(f"{r} {n}" for r, n in result["rejected"].items() if n)
    return (f"all {result['candidates']} candidate tiles failed QC ({reasons}); see its QC picture and "
            f"rejected.jsonl, and the slides.qc.* thresholds")


def _tile_loop(reader: SlideReader, job: SlideJob, cands, quota: Optional[int], size0: int, level: int,
               target_mpp: float, mask: TissueMask, normalizer, tmp: Path, result: Dict[str, Any]) -> List[tuple]:
    """Read, QC, normalise and stage tiles until `quota` are kept; returns (x, y, reason) boxes for the picture."""
    cfg = job.cfg
    rejected: Counter = Counter()
    unnormalised: Counter = Counter()  # kept tiles the normaliser gave back as they came, by what it recorded
    boxes: List[tuple] = []
    kept = 0
    with open(tmp / TILES, "w") as index, open(tmp / REJECTED, "w") as rejects:
        for x, y, mask_frac in cands:
            if quota is not None and kept >= quota:
                break
            tile = reader.read_tile(x, y, size0, cfg.tile_size, level)
            scores, reason = check_tile(tile, mask.threshold, mask.channel, cfg.qc)
            boxes.append((x, y, reason))
            if reason is not None:
                rejected[reason] += 1
                rejects.write(json.dumps({"x": x, "y": y, "reason": reason,
                                          "qc": {k: round(v, 4) for k, v in scores.items()}}) + "\n")
                continue
            out, used = normalizer(tile)
            if "-failed" in used:
                unnormalised[used] += 1
            key = f"{safe_key(job.slide_id)}_x{x}_y{y}"
            (tmp / "tiles" / f"{key}.jpg").write_bytes(encode_jpeg(out, cfg.stage_jpeg_quality))
            meta = {"source": f"slides:{Path(job.path).name}", "slide_id": job.slide_id, "level": level,
                    "x": x, "y": y, "mpp": round(target_mpp, 6), "level0_mpp": round(reader.mpp, 6),
                    "tile_size": cfg.tile_size, "size0": size0, "mask_fraction": round(mask_frac, 4),
                    "qc": {k: round(v, 4) for k, v in scores.items()}, "normalisation": used}
            index.write(json.dumps({"key": key, "meta": meta}, sort_keys=True) + "\n")
            kept += 1
    result["kept"] = kept
    result["rejected"] = {r: int(rejected.get(r, 0)) for r in REASONS}
    for used, n in sorted(unnormalised.items()):  # else one shard set mixes them with no word outside the meta
        result.setdefault("warnings", []).append(
            f"{n} of {kept} kept tiles could not be stain-normalised and are stored unnormalised (normalisation "
            f"{used!r} in their meta: too little stain for the method)")
    return boxes
