"""A broken mask file in `--mask-dir` fails its slide with a message naming the file and what is wrong (the JSON
line and column, or the GeoJSON part that is not a region), and the other slides tile. It used to escape as a
bare JSONDecodeError: a traceback that stopped the whole run with `balance_classes=true`, and otherwise a slide
error that did not say which file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.slides.geojson import read_geojson
from mmlnb_dist.slides.reader import SlideError

TRUNCATED = '{"type": "FeatureCollection", "features": [\n'  # what `echo '...[' > file` leaves
SQUARE = [[[0, 0], [512, 0], [512, 512], [0, 512], [0, 0]]]


def _feature(geometry):
    return {"type": "Feature", "properties": {}, "geometry": geometry}


@pytest.mark.parametrize("text, words", [
    (TRUNCATED, ["not valid JSON", "line 2", "column 1"]),
    (b"\xff\xfe{\x00", ["UTF-8"]),
    ('"tissue"', ["FeatureCollection"]),
    ('{"features": []}', ["no 'type'"]),
    ('{"type": "FeatureCollection"}', ["'features'"]),
    ('{"type": "FeatureCollection", "features": [3]}', ["feature 1", "not an object"]),
    (json.dumps({"type": "FeatureCollection", "features": [_feature({"type": "Polygon", "coordinates": SQUARE}),
                                                           _feature({"type": "Circle", "radius": 3})]}),
     ["feature 2", "'Circle'"]),
    (json.dumps([_feature({"type": "Polygon", "coordinates": [[0, 0], [1, 1]]})]), ["feature 1", "Polygon"]),
    (json.dumps([_feature({"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, "a"], [2, 2]]]]})]),
     ["feature 1", "MultiPolygon"]),
    ('[{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [NaN, 1], [2, 2]]]}}]',
     ["feature 1", "finite"]),
])
def test_a_broken_mask_is_a_slide_error_naming_the_file(tmp_path, text, words):
    path = tmp_path / "S-1.geojson"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SlideError) as err:
        read_geojson(path)
    message = str(err.value)
    assert str(path) in message, message
    for word in words:
        assert word in message, message


def test_valid_masks_still_read(tmp_path):
    path = tmp_path / "ok.geojson"
    for data in ({"type": "FeatureCollection", "features": []},  # nothing drawn: no tissue, not an error
                 {"type": "FeatureCollection", "features": [_feature(None), _feature({"type": "Point",
                                                                                     "coordinates": [1, 2]})]},
                 {"type": "Polygon", "coordinates": SQUARE}):
        path.write_text(json.dumps(data))
        assert len(read_geojson(path)) == (1 if data["type"] == "Polygon" else 0)


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("mask_errors")
    for k, sid in enumerate(("UD-0", "UD-1", "PD-0")):
        write_synthetic_slide(folder / f"{sid}.tif", sid[:2], width=1024, height=1024, pool_size=3,
                              downsamples=(1, 4), seed=k)
    (folder / "labels.csv").write_text("slide_id,label\nUD-0,UD\nUD-1,UD\nPD-0,PD\n")
    return folder


@pytest.mark.parametrize("balance", [True, False])
def test_the_slide_with_a_broken_mask_fails_and_the_others_tile(slides, tmp_path, balance):
    from mmlnb_dist.slides.tiler import tile_slides

    masks = tmp_path / "masks_bad"
    masks.mkdir()
    (masks / "UD-0.geojson").write_text(TRUNCATED)
    cfg = load_config(None, [f"slides.mask_dir={masks}", f"slides.sampling.balance_classes={str(balance).lower()}",
                             "slides.sampling.max_tiles_per_slide=2", "slides.qc_pictures=false",
                             "data.build.image_size=32"])
    report = tile_slides(cfg.slides, cfg.data.build, slides, slides / "labels.csv", tmp_path / "out",
                         cfg.data.classes, progress=False)
    by_id = {r["slide_id"]: r for r in report.results}
    assert by_id["UD-0"]["status"] == "failed", by_id["UD-0"]
    error = by_id["UD-0"]["error"]
    assert str(Path(masks / "UD-0.geojson")) in error and "line 2" in error, error
    assert by_id["UD-1"]["status"] == by_id["PD-0"]["status"] == "ok", report.results
    assert by_id["UD-1"]["kept"] > 0 and by_id["PD-0"]["kept"] > 0
