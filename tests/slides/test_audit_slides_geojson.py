"""Mutation-audit tests for corrected masks read from GeoJSON: classes other than Tissue are the tissue when no
Tissue class is drawn, coordinates with an altitude, a byte-order mark, GeometryCollections, and the exported mask
(exclusions as their own `Ignore*` annotations, not also as holes of every tissue polygon)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmlnb_dist.slides.geojson import read_geojson, to_geojson
from mmlnb_dist.slides.tissue import rasterize


def _ring(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _feat(geometry, cls=None):
    props = {"objectType": "annotation"}
    if cls is not None:
        props["classification"] = {"name": cls}
    return {"type": "Feature", "geometry": geometry, "properties": props}


def _poly(*rings):
    return {"type": "Polygon", "coordinates": list(rings)}


def _write(tmp_path: Path, features, prefix: bytes = b"") -> Path:
    path = tmp_path / "m.geojson"
    path.write_bytes(prefix + json.dumps({"type": "FeatureCollection", "features": features}).encode())
    return path


def _expected(*boxes, side=40, scale=16.0):
    """The raster of level-0 boxes (x0, y0, x1, y1), drawn with numpy at mask scale."""
    out = np.zeros((side, side), bool)
    for x0, y0, x1, y1 in boxes:
        out[int(y0 / scale):int(y1 / scale), int(x0 / scale):int(x1 / scale)] = True
    return out


def _inner(raster, expected):
    """Agreement away from the boundaries (one mask pixel of rounding at each edge)."""
    from scipy.ndimage import binary_erosion

    square = np.ones((3, 3), bool)
    inside, outside = binary_erosion(expected, square), binary_erosion(~expected, square)
    return bool(raster[inside].all()) and not bool(raster[outside].any())


def test_annotations_of_any_class_are_tissue_when_no_tissue_class_is_drawn(tmp_path):
    """No `Tissue` annotation: a `Tumor` and a `Stroma` region are both tissue (only exclusions are not)."""
    path = _write(tmp_path, [_feat(_poly(_ring(0, 0, 320, 320)), "Tumor"),
                             _feat(_poly(_ring(320, 320, 640, 640)), "Stroma"),
                             _feat(_poly(_ring(0, 0, 160, 160)), "Ignore*")])
    raster = rasterize(read_geojson(path), (40, 40), 16.0)
    expected = _expected((0, 0, 320, 320), (320, 320, 640, 640))
    expected[:10, :10] = False
    assert _inner(raster, expected)


def test_coordinates_with_an_altitude_are_read_as_x_y(tmp_path):
    """GeoJSON positions may carry a third number (RFC 7946 altitude): the ring keeps x and y only."""
    ring = [[x, y, 0.0] for x, y in _ring(160, 160, 480, 480)]
    (poly,) = read_geojson(_write(tmp_path, [_feat(_poly(ring), "Tissue")]))
    assert poly.outer.shape == (5, 2)
    assert _inner(rasterize([poly], (40, 40), 16.0), _expected((160, 160, 480, 480)))


def test_a_mask_saved_with_a_byte_order_mark_is_read(tmp_path):
    """An editor that saves UTF-8 with a BOM does not make the mask unreadable."""
    path = _write(tmp_path, [_feat(_poly(_ring(0, 0, 320, 320)), "Tissue")], prefix=b"\xef\xbb\xbf")
    (poly,) = read_geojson(path)
    assert poly.outer[:, 0].max() == 320


def test_polygons_inside_a_geometry_collection_are_tissue(tmp_path):
    """A GeometryCollection's polygons are regions (its points and lines are not)."""
    collection = {"type": "GeometryCollection", "geometries": [
        _poly(_ring(0, 0, 320, 320)), {"type": "Point", "coordinates": [500, 500]},
        {"type": "MultiPolygon", "coordinates": [[_ring(320, 320, 640, 640)]]}]}
    polys = read_geojson(_write(tmp_path, [_feat(collection, "Tissue")]))
    assert len(polys) == 2
    assert _inner(rasterize(polys, (40, 40), 16.0), _expected((0, 0, 320, 320), (320, 320, 640, 640)))


def test_an_exported_corrected_mask_keeps_exclusions_as_their_own_annotations(tmp_path):
    """Tissue (with a hole of its own) minus an Ignore* region spanning two tissue polygons, written back: each
    tissue annotation holds only its own holes, the exclusion is one Ignore* annotation, and the file reads back to
    the same raster."""
    path = _write(tmp_path, [_feat(_poly(_ring(0, 0, 320, 640), _ring(80, 400, 240, 560)), "Tissue"),
                             _feat(_poly(_ring(320, 0, 640, 640)), "Tissue"),
                             _feat(_poly(_ring(160, 0, 480, 160)), "Ignore*")])
    polys = read_geojson(path)
    doc = to_geojson(polys, "S1")
    by_class = {}
    for f in doc["features"]:
        by_class.setdefault(f["properties"]["classification"]["name"], []).append(f["geometry"]["coordinates"])
    assert [len(rings) for rings in by_class["Tissue"]] == [2, 1]
    assert len(by_class["Ignore*"]) == 1 and len(by_class["Ignore*"][0]) == 1
    again = tmp_path / "again.geojson"
    again.write_text(json.dumps(doc))
    assert np.array_equal(rasterize(read_geojson(again), (40, 40), 16.0), rasterize(polys, (40, 40), 16.0))



def test_derived_classes_count_as_their_base_class(tmp_path):
    """QuPath's derived classes (`Base: Sub`, written as the name or as `names`): `Artefact: Pen` and
    `Ignore*: Fold` are cut out like their base class (they were read as tissue classes, so a pen region was tissue),
    and `Tissue: Viable` marks tissue like `Tissue` (so a `Tumor` region beside it is not)."""
    derived_names = {"classification": {"names": ["Ignore*", "Fold"]}, "objectType": "annotation"}
    path = _write(tmp_path, [_feat(_poly(_ring(0, 0, 320, 320)), "Tissue: Viable"),
                             _feat(_poly(_ring(320, 320, 640, 640)), "Tumor"),
                             _feat(_poly(_ring(0, 0, 160, 160)), "Artefact: Pen"),
                             {"type": "Feature", "geometry": _poly(_ring(160, 160, 320, 320)),
                              "properties": derived_names}])
    raster = rasterize(read_geojson(path), (40, 40), 16.0)
    expected = _expected((0, 0, 320, 320))
    expected[:10, :10] = False
    expected[10:20, 10:20] = False
    assert _inner(raster, expected)
