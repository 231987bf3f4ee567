"""Audit of one slide's tiling (`slides.slide_task`): what the resume fingerprint depends on (and what it must
not), a damaged result record read as none, the staged tiles (normaliser applied and recorded, the configured JPEG
quality, the requested mpp in their meta), the rejected tiles' positions, the QC picture only when asked, and no
`.tmp` folder left behind by a finished or a failed slide."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmlnb_dist.config import load_config
from mmlnb_dist.slides.reader import SlideReader
from mmlnb_dist.slides.slide_task import (REJECTED, RESULT, TILES, SlideJob, encode_jpeg, fingerprint, load_result,
                                          process_slide)


@pytest.fixture(scope="module")
def wsi(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    path = tmp_path_factory.mktemp("task") / "S.tif"
    layout = write_synthetic_slide(path, "PD", width=1024, height=1024, mpp=0.5, cell=128, pool_size=2,
                                   downsamples=(1, 4), seed=3)
    return path, layout


def _cfg(*overrides: str):
    return load_config(None, ["slides.tile_size=64", "slides.qc_pictures=false", *overrides]).slides


def _whole_mask(tmp_path: Path) -> Path:
    ring = [[0, 0], [1024, 0], [1024, 1024], [0, 1024], [0, 0]]
    (tmp_path / "m.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    return tmp_path / "m.geojson"


def test_the_fingerprint_follows_what_the_tiles_depend_on_and_nothing_else(wsi, tmp_path):
    path, _ = wsi
    mask = tmp_path / "m.geojson"
    mask.write_text("{}")
    target = np.full((4, 4, 3), 100, np.uint8)
    base = fingerprint(_cfg(), path, 10, target, mask)
    same = [_cfg("slides.workers=3"), _cfg("slides.ray_address=auto"), _cfg("slides.qc_pictures=true"),
            _cfg("slides.log_to_tracking=true"), _cfg(f"slides.mask_dir={tmp_path}"), _cfg("slides.assume_mpp=0.3")]
    assert all(fingerprint(c, path, 10, target, mask) == base for c in same)  # (labels: not an argument)
    changed = [fingerprint(_cfg("slides.tile_size=128"), path, 10, target, mask),
               fingerprint(_cfg(), path, 11, target, mask),
               fingerprint(_cfg(), path, 10, target + 1, mask),
               fingerprint(_cfg(), path, 10, None, mask)]
    assert len({base, *changed}) == 5
    mask.write_text('{"type": "FeatureCollection", "features": []}')
    assert fingerprint(_cfg(), path, 10, target, mask) != base


def test_the_fingerprint_follows_the_tiling_code_version(wsi, tmp_path, monkeypatch):
    """Slides staged before a fix of the mask code (same options, same slide) were reused with their old masks on
    resume after an upgrade: a version of the tiling code is part of the fingerprint."""
    from mmlnb_dist.slides import slide_task

    path, _ = wsi
    base = fingerprint(_cfg(), path, 10, None, None)
    monkeypatch.setattr(slide_task, "TILING_VERSION", slide_task.TILING_VERSION + 1)
    assert fingerprint(_cfg(), path, 10, None, None) != base


def test_a_damaged_result_record_is_no_result(tmp_path):
    assert load_result(tmp_path, "S") is None
    (tmp_path / "slides" / "S").mkdir(parents=True)
    (tmp_path / "slides" / "S" / RESULT).write_text('{"slide_id": "S", "sta')  # cut short by a kill
    assert load_result(tmp_path, "S") is None
    (tmp_path / "slides" / "S" / RESULT).write_text('{"slide_id": "S"}')
    assert load_result(tmp_path, "S") == {"slide_id": "S"}


def test_staged_tiles_are_normalised_encoded_at_the_set_quality_and_at_the_requested_mpp(wsi, tmp_path):
    path, _ = wsi

    def invert(rgb):
        return 255 - rgb, "inverted"

    cfg = _cfg("slides.mpp=1.0", "slides.stage_jpeg_quality=40", "slides.sampling.max_tiles_per_slide=3",
               "slides.qc.min_tissue_fraction=0", "slides.qc.min_blur=0", "slides.qc.min_contrast=0",
               "slides.qc.max_pen_fraction=1")
    job = SlideJob("S", path, "PD", cfg, tmp_path / "work", "fp", mask_path=_whole_mask(tmp_path), normalizer=invert)
    result = process_slide(job)
    assert (result["status"], result["kept"], result["size0"], result["mpp"]) == ("ok", 3, 128, 1.0)
    folder = tmp_path / "work" / "slides" / "S"
    assert sorted(p.name for p in (tmp_path / "work" / "slides").iterdir()) == ["S"]  # no S.tmp left
    assert not (folder / "qc.png").exists()
    with SlideReader(path) as reader:
        for line in open(folder / TILES):
            row = json.loads(line)
            meta = row["meta"]
            assert (meta["normalisation"], meta["mpp"], meta["level0_mpp"], meta["size0"]) == ("inverted", 1.0,
                                                                                               0.5, 128)
            tile = reader.read_tile(meta["x"], meta["y"], 128, 64, meta["level"])
            staged = (folder / "tiles" / f"{row['key']}.jpg").read_bytes()
            assert staged == encode_jpeg(255 - tile, 40)
            assert np.asarray(Image.open(io.BytesIO(staged))).shape == (64, 64, 3)


def test_rejected_tiles_are_recorded_where_they_are_and_the_qc_picture_only_when_asked(wsi, tmp_path):
    path, layout = wsi
    cfg = _cfg("slides.qc_pictures=true", "slides.sampling.max_tiles_per_slide=1000")
    result = process_slide(SlideJob("S", path, "PD", cfg, tmp_path / "work", "fp", mask_path=_whole_mask(tmp_path)))
    folder = tmp_path / "work" / "slides" / "S"
    assert result["status"] == "ok" and (folder / "qc.png").is_file()
    rejected = [json.loads(line) for line in open(folder / REJECTED)]
    assert sum(result["rejected"].values()) == len(rejected) == result["candidates"] - result["kept"]
    blurred = [r for r in rejected if r["reason"] == "blur"]
    assert blurred and all(layout.region_of_tile(r["x"], r["y"], 64) in ("blurred", "mixed") for r in blurred)
    background = [r for r in rejected if r["reason"] == "background"]
    assert background and all(layout.region_of_tile(r["x"], r["y"], 64) != "tissue" for r in background)


def test_a_slide_that_cannot_be_read_leaves_no_folder(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00 not really a tiff")
    result = process_slide(SlideJob("bad", bad, "PD", _cfg(), tmp_path / "work", "fp"))
    assert result["status"] == "failed" and "bad.tif" in result["error"]
    assert list((tmp_path / "work" / "slides").iterdir()) == []
