"""Tissue masks as GeoJSON that QuPath imports and exports (File > Import/Export objects > GeoJSON).

A FeatureCollection of Polygon features in level-0 pixel coordinates; each polygon's first ring is the outer
boundary, the others are holes (RFC 7946 ring order; QuPath reads both orientations). MultiPolygons (what
QuPath writes after merging annotations) are split into polygons on reading.

A corrected mask is read as QuPath means its objects: only annotations are regions (detections, cells and tiles
are results of an analysis, not a drawn mask); annotations classified `Tissue` are the tissue when there are any
(else every annotation that is not an exclusion); annotations of an exclusion class (`Ignore*`, QuPath's class
for regions to leave out, or one of `EXCLUSION_CLASSES`) are cut out of it.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .tissue import Ring, TissuePolygon

log = logging.getLogger(__name__)

TISSUE_CLASS = "Tissue"
IGNORE_CLASS = "Ignore*"
# QuPath 0.2 named the object type only in the feature id.
QUPATH_02_IDS = {"PathAnnotationObject": "annotation", "PathDetectionObject": "detection", "PathCellObject": "cell",
                 "PathTileObject": "tile", "TMACoreObject": "tmacore"}
# Class names (compared without case and without QuPath's trailing '*') whose annotations mark what to leave out.
EXCLUSION_CLASSES = ("ignore", "exclude", "excluded", "exclusion", "background", "artefact", "artifact")


def _ring(points: np.ndarray) -> List[List[float]]:
    pts = [[round(float(x), 2), round(float(y), 2)] for x, y in points]
    if pts and pts[0] != pts[-1]:
        pts.append(pts[0])  # GeoJSON rings are closed
    return pts


@dataclass
class MaskedPolygon(TissuePolygon):
    """A tissue polygon whose `holes` also hold the exclusion regions (`exclusions`, the same ring objects).

    Every tissue polygon carries every exclusion as a hole: the raster is drawn polygon by polygon (fill the
    outline, clear the holes), so an exclusion is cleared wherever any polygon filled it, also where it crosses
    a tissue outline or spans two polygons, without polygon clipping. On writing, exclusions become their own
    `Ignore*` annotations again, so the exported mask shows in QuPath as drawn and reads back to the same tissue.
    """

    exclusions: List[Ring] = field(default_factory=list)

    def own_holes(self) -> List[Ring]:
        return [h for h in self.holes if not any(h is e for e in self.exclusions)]


def _feature(fid: str, rings: List[Ring], name: str, color: List[int], slide_id: str) -> Dict[str, Any]:
    return {
        "type": "Feature",
        "id": fid,
        "geometry": {"type": "Polygon", "coordinates": [_ring(r) for r in rings]},
        # QuPath: objectType makes it an annotation; classification gives it a class and a colour.
        "properties": {"objectType": "annotation", "classification": {"name": name, "color": color},
                       "slide_id": slide_id},
    }


def to_geojson(polygons: List[TissuePolygon], slide_id: str) -> Dict[str, Any]:
    features, exclusions = [], {}
    for i, poly in enumerate(polygons):
        holes = poly.own_holes() if isinstance(poly, MaskedPolygon) else poly.holes
        features.append(_feature(f"{slide_id}-tissue-{i}", [poly.outer, *holes], TISSUE_CLASS, [0, 160, 0],
                                 slide_id))
        for ring in poly.exclusions if isinstance(poly, MaskedPolygon) else []:
            exclusions.setdefault(id(ring), ring)  # one annotation per exclusion, however many polygons hold it
    for i, ring in enumerate(exclusions.values()):
        features.append(_feature(f"{slide_id}-ignore-{i}", [ring], IGNORE_CLASS, [180, 180, 180], slide_id))
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: Path, polygons: List[TissuePolygon], slide_id: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_geojson(polygons, slide_id), indent=1, sort_keys=True))
    tmp.replace(path)
    return path


def read_geojson(path: Path) -> List[TissuePolygon]:
    """The tissue of a mask file: its tissue annotations' polygons (with holes), exclusion regions cut out.

    Reads a FeatureCollection, a Feature, a bare list of features (QuPath's older exports) or a bare geometry;
    Polygon, MultiPolygon and GeometryCollection geometries (points and lines are not regions)."""
    path = Path(path)
    data = json.loads(path.read_text())
    if isinstance(data, list):
        features = data
    elif data.get("type") == "FeatureCollection":
        features = data.get("features", [])
    elif data.get("type") == "Feature":
        features = [data]
    else:
        features = [{"type": "Feature", "geometry": data}]
    kinds: Dict[str, List[List[TissuePolygon]]] = {"tissue": [], "exclusion": [], "unclassified": [], "other": []}
    other_names: Counter = Counter()
    skipped: Counter = Counter()
    for feature in features:
        kind, name = _kind(feature)
        if kind == "skip":
            skipped[f"{name} object(s)"] += 1
            continue
        polygons, not_regions = _polygons(feature.get("geometry"))
        skipped["point or line geometry(ies)"] += not_regions
        if polygons:
            kinds[kind].append(polygons)
            if kind == "other":
                other_names[name] += 1
    return _combine(path, kinds, other_names, skipped)


def _kind(feature: Dict[str, Any]) -> Tuple[str, Optional[str]]:
    """`(kind, name)`: `skip` (not an annotation; name: its object type), `tissue`, `exclusion`, `unclassified`
    or `other` (name: the class)."""
    props = feature.get("properties") or {}
    # QuPath >= 0.3 writes properties.objectType; some tools put it on the feature; QuPath 0.2 wrote the Java
    # class as the feature id ("PathDetectionObject"). No object type at all (other tools): a drawn region.
    otype = props.get("objectType", feature.get("objectType"))
    if otype is None:
        otype = QUPATH_02_IDS.get(str(feature.get("id")))
    if otype is not None and str(otype).lower() != "annotation":
        return "skip", str(otype)
    cls = props.get("classification")
    # QuPath writes {"name": ..., "color": ...} (derived classes may also list "names"); older files a string.
    if isinstance(cls, dict):
        name = cls.get("name") or ": ".join(str(n) for n in cls.get("names") or [])
    else:
        name = cls
    name = str(name).strip() if name else ""
    if not name:
        return "unclassified", None
    if name.casefold() == TISSUE_CLASS.casefold():
        return "tissue", name
    if name.rstrip("*").strip().casefold() in EXCLUSION_CLASSES:
        return "exclusion", name
    return "other", name


def _polygons(geom: Any) -> Tuple[List[TissuePolygon], int]:
    """The polygons of a geometry, and how many point or line geometries it held (not regions)."""
    if not geom:
        return [], 0
    kind = geom.get("type")
    if kind == "GeometryCollection":
        polys, lines = [], 0
        for g in geom.get("geometries") or []:
            p, n = _polygons(g)
            polys += p
            lines += n
        return polys, lines
    if kind == "Polygon":
        parts = [geom["coordinates"]]
    elif kind == "MultiPolygon":
        parts = geom["coordinates"]
    else:
        return [], 1
    polygons = []
    for rings in parts:
        arrays = [np.asarray(r, dtype=np.float64)[:, :2] for r in rings if len(r) >= 3]
        if arrays:
            polygons.append(TissuePolygon(arrays[0], arrays[1:]))
    return polygons, 0


def _combine(path: Path, kinds: Dict[str, List[List[TissuePolygon]]], other_names: Counter,
             skipped: Counter) -> List[TissuePolygon]:
    """Tissue minus exclusions, with a log line saying which annotations made the tissue and which did not."""
    if kinds["tissue"]:
        tissue_sets = kinds["tissue"]
        used = [f"{len(kinds['tissue'])} {TISSUE_CLASS} annotation(s)"]
        # the file says what tissue is: an unclassified or otherwise classified region is something else
        skipped["unclassified annotation(s)"] += len(kinds["unclassified"])
        for name, n in other_names.items():
            skipped[f"{name} annotation(s)"] += n
    else:  # no Tissue class: every region drawn that is not an exclusion is tissue
        tissue_sets = kinds["unclassified"] + kinds["other"]
        used = [f"{len(kinds['unclassified'])} unclassified annotation(s)"] if kinds["unclassified"] else []
        used += [f"{n} {name} annotation(s)" for name, n in sorted(other_names.items())]
    exclusions = [p for polys in kinds["exclusion"] for p in polys]
    if any(p.holes for p in exclusions):
        log.warning("mask %s: holes in exclusion annotations are not given back to the tissue (each exclusion "
                    "outline is left out whole)", path)
    rings = [p.outer for p in exclusions]
    tissue = [p for polys in tissue_sets for p in polys]
    out: List[TissuePolygon] = [MaskedPolygon(p.outer, [*p.holes, *rings], rings) if rings else p for p in tissue]
    log.info("mask %s: tissue from %s, minus %d exclusion annotation(s); not used: %s", path,
             ", ".join(used) or "no annotation", len(kinds["exclusion"]),
             ", ".join(f"{n} {what}" for what, n in sorted(skipped.items()) if n) or "nothing")
    return out
