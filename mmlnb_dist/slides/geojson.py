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

from ..core.files import replace_text
from .reader import SlideError
from .tissue import Ring, TissuePolygon

log = logging.getLogger(__name__)

TISSUE_CLASS = "Tissue"
IGNORE_CLASS = "Ignore*"
GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                  "GeometryCollection")
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
    replace_text(path, json.dumps(to_geojson(polygons, slide_id), indent=1, sort_keys=True))
    return path


class MaskFileError(SlideError):
    """A `--mask-dir` file is not readable GeoJSON: its slide fails with this message (naming the file and the
    problem), the other slides tile."""


class _Bad(ValueError):
    """What is wrong inside one feature (read_geojson adds the file and the feature's number)."""


def read_geojson(path: Path, warnings: Optional[List[str]] = None) -> List[TissuePolygon]:
    """The tissue of a mask file: its tissue annotations' polygons (with holes), exclusion regions cut out.

    Reads a FeatureCollection, a Feature, a bare list of features (QuPath's older exports) or a bare geometry;
    Polygon, MultiPolygon and GeometryCollection geometries (points and lines are not regions). A file that is
    not such GeoJSON is a `MaskFileError` naming it and what is wrong. A warning about the file goes to
    `warnings` when given (a pool or Ray worker's log goes nowhere the user looks: the slide's result carries it
    to the driver), else to the log."""
    path = Path(path)
    features = _features(path, _load(path))
    kinds: Dict[str, List[List[TissuePolygon]]] = {"tissue": [], "exclusion": [], "unclassified": [], "other": []}
    other_names: Counter = Counter()
    skipped: Counter = Counter()
    for i, feature in enumerate(features, 1):
        try:
            if not isinstance(feature, dict):
                raise _Bad(f"not an object but {_what(feature)}")
            kind, name = _kind(feature)
            if kind == "skip":
                skipped[f"{name} object(s)"] += 1
                continue
            polygons, not_regions = _polygons(feature.get("geometry"))
        except _Bad as err:
            raise MaskFileError(f"mask {path}: feature {i}: {err}") from None
        skipped["point or line geometry(ies)"] += not_regions
        if polygons:
            kinds[kind].append(polygons)
            if kind == "other":
                other_names[name] += 1
    return _combine(path, kinds, other_names, skipped, warnings)


def _load(path: Path) -> Any:
    """The parsed JSON, or a MaskFileError saying where it stops being JSON."""
    try:
        text = path.read_bytes().decode("utf-8-sig")  # QuPath writes UTF-8; a BOM from an editor is harmless
    except OSError as err:
        raise MaskFileError(f"mask {path}: cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise MaskFileError(f"mask {path}: not UTF-8 text (byte {err.start}); GeoJSON is UTF-8 JSON") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise MaskFileError(f"mask {path}: not valid JSON: {err.msg} at line {err.lineno}, column {err.colno} "
                            "(a file cut short, or edited by hand?)") from None


def _features(path: Path, data: Any) -> List[Any]:
    """The features of a GeoJSON document (a bare geometry is one feature)."""
    expected = "expected a GeoJSON FeatureCollection, Feature, list of features or geometry"
    if isinstance(data, list):
        return data
    if not isinstance(data, dict):
        raise MaskFileError(f"mask {path}: {expected}, found {_what(data)}")
    kind = data.get("type")
    if kind is None:
        raise MaskFileError(f"mask {path}: the top-level object has no 'type' ({expected})")
    if kind == "FeatureCollection":
        if not isinstance(data.get("features"), list):
            raise MaskFileError(f"mask {path}: a FeatureCollection without a 'features' list")
        return data["features"]
    if kind == "Feature":
        return [data]
    if kind in GEOMETRY_TYPES:
        return [{"type": "Feature", "geometry": data}]
    raise MaskFileError(f"mask {path}: top-level type {kind!r} is not GeoJSON ({expected})")


def _what(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _kind(feature: Dict[str, Any]) -> Tuple[str, Optional[str]]:
    """`(kind, name)`: `skip` (not an annotation; name: its object type), `tissue`, `exclusion`, `unclassified`
    or `other` (name: the class)."""
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise _Bad(f"'properties' is {_what(props)}, not an object")
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
    base = name.split(":", 1)[0].strip()  # a QuPath derived class (`Artefact: Pen`) is one of its base class
    if base.casefold() == TISSUE_CLASS.casefold():
        return "tissue", name
    if base.rstrip("*").strip().casefold() in EXCLUSION_CLASSES:
        return "exclusion", name
    return "other", name


def _polygons(geom: Any) -> Tuple[List[TissuePolygon], int]:
    """The polygons of a geometry, and how many point or line geometries it held (not regions)."""
    if geom is None:  # a feature without a location (RFC 7946 allows it)
        return [], 0
    if not isinstance(geom, dict):
        raise _Bad(f"'geometry' is {_what(geom)}, not an object")
    kind = geom.get("type")
    if kind not in GEOMETRY_TYPES:
        raise _Bad(f"unknown geometry type {kind!r} (GeoJSON has {', '.join(GEOMETRY_TYPES)})")
    if kind == "GeometryCollection":
        if not isinstance(geom.get("geometries"), list):
            raise _Bad("a GeometryCollection without a 'geometries' list")
        polys, lines = [], 0
        for g in geom["geometries"]:
            p, n = _polygons(g)
            polys += p
            lines += n
        return polys, lines
    if kind not in ("Polygon", "MultiPolygon"):
        return [], 1
    coords = geom.get("coordinates")
    parts = [coords] if kind == "Polygon" else coords
    shape = "a list of rings of [x, y] points" if kind == "Polygon" else "a list of polygons (lists of rings)"
    if not isinstance(parts, list) or not all(isinstance(rings, list) for rings in parts):
        raise _Bad(f"{kind} coordinates are not {shape}")
    polygons = []
    for rings in parts:
        arrays = [_ring_array(r, kind, shape) for r in rings]
        # a ring of fewer than 3 points encloses nothing: a hole leaves no gap, an outline (with its holes) no region
        if arrays and len(arrays[0]) >= 3:
            polygons.append(TissuePolygon(arrays[0], [a for a in arrays[1:] if len(a) >= 3]))
    return polygons, 0


def _ring_array(ring: Any, kind: str, shape: str) -> np.ndarray:
    try:
        arr = np.asarray(ring, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] < 2:
        raise _Bad(f"{kind} coordinates are not {shape}: a ring is {json.dumps(ring)[:60]}")
    if not np.isfinite(arr[:, :2]).all():
        raise _Bad(f"{kind} coordinates are not all finite numbers (NaN or Infinity)")
    return arr[:, :2]


def _combine(path: Path, kinds: Dict[str, List[List[TissuePolygon]]], other_names: Counter,
             skipped: Counter, warnings: Optional[List[str]] = None) -> List[TissuePolygon]:
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
        note = (f"mask {path}: holes in exclusion annotations are not given back to the tissue (each exclusion "
                "outline is left out whole)")
        if warnings is None:
            log.warning("%s", note)
        else:
            warnings.append(note)
    rings = [p.outer for p in exclusions]
    tissue = [p for polys in tissue_sets for p in polys]
    out: List[TissuePolygon] = [MaskedPolygon(p.outer, [*p.holes, *rings], rings) if rings else p for p in tissue]
    log.info("mask %s: tissue from %s, minus %d exclusion annotation(s); not used: %s", path,
             ", ".join(used) or "no annotation", len(kinds["exclusion"]),
             ", ".join(f"{n} {what}" for what, n in sorted(skipped.items()) if n) or "nothing")
    return out
