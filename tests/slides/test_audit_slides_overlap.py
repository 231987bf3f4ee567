"""Mutation-audit tests for overlapping and degenerate regions of a corrected mask: tissue annotations are a union
whatever their order in the file (an island inside another annotation's lumen used to be erased when listed first),
and a Polygon whose outline has fewer than three points is no region (its hole used to become the tissue)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmlnb_dist.slides.geojson import read_geojson
from mmlnb_dist.slides.tissue import rasterize


def _ring(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _feat(rings, cls):
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": list(rings)},
            "properties": {"objectType": "annotation", "classification": {"name": cls}}}


def _write(tmp_path: Path, features) -> Path:
    path = tmp_path / "m.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _inner(raster, expected):
    """Agreement away from the boundaries (one mask pixel of rounding at each edge)."""
    from scipy.ndimage import binary_erosion

    square = np.ones((3, 3), bool)
    inside, outside = binary_erosion(expected, square), binary_erosion(~expected, square)
    return bool(raster[inside].all()) and not bool(raster[outside].any())


def test_an_island_inside_another_annotations_hole_is_tissue_whatever_the_file_order(tmp_path):
    """Tissue annotations are a union: an island drawn inside a lumen (a hole of another Tissue annotation) is
    tissue whether the file lists it before or after the annotation with the hole; an Ignore* region still cuts
    both."""
    outer = _feat([_ring(0, 0, 640, 640), _ring(160, 160, 480, 480)], "Tissue")
    island = _feat([_ring(240, 240, 400, 400)], "Tissue")
    ignore = _feat([_ring(320, 0, 640, 320)], "Ignore*")
    expected = np.ones((40, 40), bool)  # 16 level-0 px per mask pixel
    expected[10:30, 10:30] = False
    expected[15:25, 15:25] = True
    expected[:20, 20:] = False
    for order, features in enumerate(([outer, island, ignore], [island, outer, ignore], [ignore, island, outer])):
        raster = rasterize(read_geojson(_write(tmp_path, features)), (40, 40), 16.0)
        assert _inner(raster, expected), f"file order {order}"


def test_a_degenerate_outline_is_no_region_even_with_holes(tmp_path):
    """A Polygon whose outer ring has two points encloses nothing: its hole is not promoted to the tissue outline
    (which would make the region meant to be left out the tissue)."""
    path = _write(tmp_path, [_feat([[[0, 0], [640, 640]], _ring(160, 160, 480, 480)], "Tissue"),
                             _feat([_ring(480, 480, 640, 640)], "Tissue")])
    (poly,) = read_geojson(path)
    assert poly.outer[:, 0].min() == 480 and poly.holes == []
