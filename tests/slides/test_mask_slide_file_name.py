"""`--mask-dir` reads a corrected mask saved as `<slide file name>.geojson` (`S1.svs.geojson`: the name QuPath's
"export objects" and many scripts give). It was warned about as matching no slide and the slide was tiled with
its detected tissue; now it is the slide's mask, and it counts in the two-different-masks refusal."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from support.slides import tile, two_slides

# about one tile of tissue inside the slide: fewer candidates than the detected mask gives
SQUARE = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {
    "type": "Polygon", "coordinates": [[[264, 264], [520, 264], [520, 520], [264, 520], [264, 264]]]}}]}


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    return two_slides(tmp_path_factory.mktemp("slides"))


def _candidates(folder: Path, out: Path, mask_dir: Path | None = None):
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = load_config(None, ["slides.sampling.max_tiles_per_slide=2", "data.build.image_size=32",
                             "slides.qc_pictures=false"] + ([f"slides.mask_dir={mask_dir}"] if mask_dir else []))
    report = tile_slides(cfg.slides, cfg.data.build, folder, folder / "labels.csv", out, cfg.data.classes,
                         progress=False)
    return {r["slide_id"]: r["candidates"] for r in report.results}


def test_a_mask_named_by_the_slide_file_name_is_used(slides, tmp_path, caplog):
    before = _candidates(slides, tmp_path / "plain")
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "UD-0.tif.geojson").write_text(json.dumps(SQUARE))
    with caplog.at_level("WARNING"):
        after = _candidates(slides, tmp_path / "out", masks)
    assert 0 < after["UD-0"] < before["UD-0"], (before, after)
    assert after["PD-0"] == before["PD-0"]
    assert "match no slide" not in caplog.text, caplog.text


def test_a_file_name_mask_and_a_different_id_mask_are_refused_naming_both(slides, tmp_path, capsys):
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "UD-0.tif.geojson").write_text(json.dumps(SQUARE))
    other = json.loads(json.dumps(SQUARE))
    other["features"][0]["geometry"]["coordinates"][0][1][0] = 700
    (masks / "UD-0.geojson").write_text(json.dumps(other))
    out = tmp_path / "out"
    code = tile(slides, out, "--mask-dir", str(masks))
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2, last
    assert "'UD-0'" in last and "UD-0.tif.geojson" in last and "UD-0.geojson" in last, last
    assert not out.exists() and not (tmp_path / "out.work").exists()


def test_a_mask_file_given_as_the_mask_folder_is_named_as_a_file(tmp_path):
    """`--mask-dir masks/S1.geojson` (the mask itself) was refused as 'no such folder', though it exists."""
    from mmlnb_dist.slides.inputs import TilingInputError, check_mask_dir

    mask = tmp_path / "S1.geojson"
    mask.write_text(json.dumps(SQUARE))
    with pytest.raises(TilingInputError, match="is a file") as err:
        check_mask_dir(mask, ["S1"])
    assert "no such folder" not in str(err.value) and "folder that holds" in str(err.value), err.value
