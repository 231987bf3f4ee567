"""A corrected mask whose regions reach far past the slide (coordinates at another scale: a mask of a level of
another downsample, or of a higher-magnification scan) is tiled where it overlaps, with a warning naming the file
and both extents: it used to be used silently, its tissue in the wrong places."""
from __future__ import annotations

import json

import pytest

from support.slides import SIDE, tile, two_slides


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    return two_slides(tmp_path_factory.mktemp("wsi"))


def _square(x0, y0, side):
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x0 + side, y0], [x0 + side, y0 + side],
                                                [x0, y0 + side], [x0, y0]]]}


def test_a_mask_reaching_far_past_the_slide_is_warned_about(slides, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "UD-0.geojson").write_text(json.dumps(_square(SIDE // 8, SIDE // 8, 4 * SIDE)))  # at 4x the scale
    (masks / "PD-0.geojson").write_text(json.dumps(_square(-4, -4, SIDE + 8)))  # a brush stroke past the edge
    tile(slides, tmp_path / "out", "--mask-dir", str(masks))
    results = {sid: json.loads((tmp_path / "out.work" / "slides" / sid / "result.json").read_text())
               for sid in ("UD-0", "PD-0")}
    warned = [w for w in results["UD-0"].get("warnings", []) if "UD-0.geojson" in w]
    assert len(warned) == 1, results["UD-0"]
    assert f"{SIDE} x {SIDE}" in warned[0] and str(SIDE // 8 + 4 * SIDE) in warned[0]
    assert results["UD-0"]["status"] == "ok"  # tiled where the mask overlaps, as before
    assert not [w for w in results["PD-0"].get("warnings", []) if "PD-0.geojson" in w], results["PD-0"]
