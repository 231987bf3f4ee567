"""Kept tiles the stain normaliser could not handle (`normalisation: macenko-failed:none` in their meta, stored
unnormalised) are counted in the slide's warnings: a `--stain macenko` run mixed normalised and unnormalised tiles in
one shard set with no word outside each tile's meta."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.slides.slide_task import TILES, SlideJob, process_slide


class EverySecondFails:
    """A normaliser stand-in: the 1st, 3rd, ... tile normalised (inverted), the others given back as they came."""

    def __init__(self):
        self.calls = 0

    def __call__(self, rgb):
        self.calls += 1
        return (255 - rgb, "macenko") if self.calls % 2 else (rgb, "macenko-failed:none")


@pytest.fixture(scope="module")
def wsi(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    path = tmp_path_factory.mktemp("stain") / "S.tif"
    write_synthetic_slide(path, "PD", width=1024, height=1024, pool_size=2, downsamples=(1, 4), seed=3)
    return path


def _job(wsi, tmp_path, normalizer):
    ring = [[0, 0], [1024, 0], [1024, 1024], [0, 1024], [0, 0]]
    (tmp_path / "m.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    cfg = load_config(None, ["slides.tile_size=64", "slides.qc_pictures=false", "slides.sampling.max_tiles_per_slide=5",
                             "slides.qc.min_tissue_fraction=0", "slides.qc.min_blur=0", "slides.qc.min_contrast=0",
                             "slides.qc.max_pen_fraction=1"]).slides
    return SlideJob("S", wsi, "PD", cfg, tmp_path / "work", "fp", mask_path=tmp_path / "m.geojson",
                    normalizer=normalizer)


def test_tiles_left_unnormalised_are_counted_in_the_warnings(wsi, tmp_path):
    result = process_slide(_job(wsi, tmp_path, EverySecondFails()))
    metas = [json.loads(line)["meta"] for line in open(tmp_path / "work" / "slides" / "S" / TILES)]
    failed = sum(m["normalisation"] == "macenko-failed:none" for m in metas)
    assert (result["kept"], failed) == (5, 2)
    notes = [w for w in result.get("warnings", []) if "normalis" in w]
    assert len(notes) == 1 and "2 of 5 kept tiles" in notes[0] and "unnormalised" in notes[0], result


def test_no_warning_when_every_tile_is_normalised(wsi, tmp_path):
    result = process_slide(_job(wsi, tmp_path, lambda rgb: (np.asarray(rgb), "macenko")))
    assert result["kept"] == 5 and not [w for w in result.get("warnings", []) if "normalis" in w]
