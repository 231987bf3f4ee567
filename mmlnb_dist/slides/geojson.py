"""Tissue masks as GeoJSON that QuPath imports and exports (File > Import/Export objects > GeoJSON).

A FeatureCollection of Polygon features in level-0 pixel coordinates; each polygon's first ring is the outer
boundary, the others are holes (RFC 7946 ring order; QuPath reads both orientations). MultiPolygons (what
QuPath writes after merging annotations) are split into polygons on reading.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from .tissue import TissuePolygon


def _ring(points: np.ndarray) -> List[List[float]]:
    pts = [[round(float(x), 2), round(float(y), 2)] for x, y in points]
    if pts and pts[0] != pts[-1]:
        pts.append(pts[0])  # GeoJSON rings are closed
    return pts


def to_geojson(polygons: List[TissuePolygon], slide_id: str) -> Dict[str, Any]:
    features = []
    for i, poly in enumerate(polygons):
        features.append({
            "type": "Feature",
            "id": f"{slide_id}-tissue-{i}",
            "geometry": {"type": "Polygon", "coordinates": [_ring(poly.outer)] + [_ring(h) for h in poly.holes]},
            # QuPath: objectType makes it an annotation; classification gives it a class and a colour.
            "properties": {"objectType": "annotation", "classification": {"name": "Tissue", "color": [0, 160, 0]},
                           "slide_id": slide_id},
        })
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: Path, polygons: List[TissuePolygon], slide_id: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_geojson(polygons, slide_id), indent=1, sort_keys=True))
    tmp.replace(path)
    return path


def read_geojson(path: Path) -> List[TissuePolygon]:
    """Polygons (with holes) from a GeoJSON FeatureCollection, Feature, Polygon or MultiPolygon."""
    data = json.loads(Path(path).read_text())
    geometries = []
    if data.get("type") == "FeatureCollection":
        geometries = [f.get("geometry") for f in data.get("features", [])]
    elif data.get("type") == "Feature":
        geometries = [data.get("geometry")]
    elif isinstance(data, list):  # QuPath's older exports: a bare list of features
        geometries = [f.get("geometry") for f in data]
    else:
        geometries = [data]
    polygons: List[TissuePolygon] = []
    for geom in geometries:
        if not geom:
            continue
        if geom["type"] == "Polygon":
            parts = [geom["coordinates"]]
        elif geom["type"] == "MultiPolygon":
            parts = geom["coordinates"]
        else:
            continue  # points, lines: not a region
        for rings in parts:
            arrays = [np.asarray(r, dtype=np.float64)[:, :2] for r in rings if len(r) >= 3]
            if arrays:
                polygons.append(TissuePolygon(arrays[0], arrays[1:]))
    return polygons
