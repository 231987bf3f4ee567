"""Random (Poisson-disk) sampling with a tile cap drew at most 4x the cap of candidate positions: a slide losing
more than three in four to QC kept fewer tiles than its cap although good positions were left, and the summary's
`candidates` column counted the draw, not the positions over the tissue."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config

RANDOM = ["slides.sampling.mode=random", "slides.tile_size=64", "data.build.image_size=32",
          "slides.qc_pictures=false", "data.build.val_fraction=0"]


@pytest.fixture(scope="module")
def wsi(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("random")
    write_synthetic_slide(folder / "S1.tif", "UD", width=1024, height=1024, pool_size=3, downsamples=(1, 4),
                          blur=False)
    (folder / "labels.csv").write_text("slide_id,label\nS1,UD\n")
    return folder


def _tile(folder: Path, out: Path, *overrides: str):
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = load_config(None, [*RANDOM, *overrides])
    (result,) = tile_slides(cfg.slides, cfg.data.build, folder, folder / "labels.csv", out, cfg.data.classes,
                            progress=False).results
    return result


def test_the_candidates_column_counts_every_position_whatever_the_cap(wsi, tmp_path):
    uncapped = _tile(wsi, tmp_path / "all", "slides.sampling.max_tiles_per_slide=null")
    capped = _tile(wsi, tmp_path / "two", "slides.sampling.max_tiles_per_slide=2")
    assert capped["kept"] == 2 and uncapped["candidates"] > 8
    assert capped["candidates"] == uncapped["candidates"]


def test_a_slide_losing_most_candidates_to_qc_still_fills_its_cap(wsi, tmp_path, monkeypatch):
    from mmlnb_dist.slides import slide_task

    real, calls = slide_task.check_tile, []

    def four_in_five_fail(tile, *args):
        scores, reason = real(tile, *args)
        calls.append(1)
        return scores, (reason or ("blur" if len(calls) % 5 else None))

    monkeypatch.setattr(slide_task, "check_tile", four_in_five_fail)
    result = _tile(wsi, tmp_path / "o", "slides.sampling.max_tiles_per_slide=3")
    assert result["kept"] == 3, result
    assert result["candidates"] >= 15
