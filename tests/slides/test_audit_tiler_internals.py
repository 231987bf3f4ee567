"""Audit of `slides.tiler` internals: where a stain target is taken from when none is configured (the
most-tissue square of the first slide that has tissue, also on a slide smaller than the square), and which
leftovers of an earlier run `discard_old_shard_set` removes (a finished or an interrupted shard set, never the
user's files nor the folder lock's own files)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.core.runlock import HOLDER_FILE, LOCK_FILE
from mmlnb_dist.slides.tiler import discard_old_shard_set, stain_target


# -- discard_old_shard_set --------------------------------------------------------------------------------------
def _leftover(out: Path, marker: str) -> Path:
    out.mkdir()
    (out / marker).write_text("{}")
    (out / "train-000000.tar").write_bytes(b"old")
    (out / "qc").mkdir()
    (out / "qc" / "summary.csv").write_text("old")
    (out / LOCK_FILE).write_text("")
    (out / HOLDER_FILE).write_text("{}")
    return out


@pytest.mark.parametrize("marker", ["manifest.json", ".incomplete"])
def test_an_earlier_shard_set_finished_or_interrupted_is_removed_but_the_lock_files_stay(tmp_path, marker):
    out = _leftover(tmp_path / "out", marker)
    assert discard_old_shard_set(out) is True
    assert sorted(p.name for p in out.iterdir()) == sorted([LOCK_FILE, HOLDER_FILE])


def test_a_folder_of_the_users_or_none_at_all_is_left_alone(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "train-000000.tar").write_bytes(b"mine")
    assert discard_old_shard_set(out) is False and (out / "train-000000.tar").read_bytes() == b"mine"
    assert discard_old_shard_set(tmp_path / "absent") is False and not (tmp_path / "absent").exists()


# -- the stain target taken from a slide ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """`A-glass` (no tissue), `B-big` (2048 px at 0.5 um/px, an elliptic section in the middle)."""
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    root = tmp_path_factory.mktemp("target_slides")
    write_synthetic_slide(root / "A-glass.tif", "UD", width=1024, height=1024, pool_size=2, downsamples=(1, 4),
                          seed=0, tissue=False, blur=False)
    write_synthetic_slide(root / "B-big.tif", "PD", width=2048, height=2048, pool_size=2, downsamples=(1, 4),
                          seed=1, blur=False)
    return root


@pytest.fixture
def no_tiatoolbox(monkeypatch):
    import mmlnb_dist.slides.stain as stain

    monkeypatch.setattr(stain, "default_target_path", lambda: None)


def _cfg(mpp: float = 0.5):
    return load_config(None, ["slides.stain.method=reinhard", f"slides.mpp={mpp}"]).slides


def _glass_share(rgb: np.ndarray) -> float:
    return float((rgb.min(axis=-1) > 215).mean())


def test_the_target_comes_from_the_first_slide_with_tissue_and_its_most_tissue_square(slides, no_tiatoolbox):
    usable = {sid: (slides / f"{sid}.tif", "UD") for sid in ("A-glass", "B-big")}
    target, source = stain_target(_cfg(), usable)
    assert source == "slide:B-big"  # the glass slide before it has no square with tissue
    assert target.shape == (1024, 1024, 3) and target.dtype == np.uint8
    # The section is an ellipse in the middle: the best 1024-pixel square is almost all tissue, while the corner
    # square (where a search that ignored the tissue share would start) is mostly glass.
    from mmlnb_dist.slides.reader import SlideReader

    with SlideReader(slides / "B-big.tif", "B-big", None) as reader:
        corner = reader.read_tile(0, 0, 1024, 1024, 0)
    assert _glass_share(target) < 0.15 < _glass_share(corner), (_glass_share(target), _glass_share(corner))


def test_a_slide_smaller_than_the_target_square_gives_its_whole_area(slides, no_tiatoolbox):
    """At 2 um/px the 1024-pixel square is 4096 level-0 pixels, more than the 2048-pixel slide: the target is the
    whole slide (resized to the square), not "no target"."""
    target, source = stain_target(_cfg(mpp=2.0), {"B-big": (slides / "B-big.tif", "UD")})
    assert source == "slide:B-big" and target.shape == (1024, 1024, 3)
    assert 0.15 < _glass_share(target) < 0.85  # the section and the glass around it


def test_no_slide_with_tissue_gives_no_target(slides, no_tiatoolbox):
    assert stain_target(_cfg(), {"A-glass": (slides / "A-glass.tif", "UD")}) == (None, "none")


# -- a whole (small) tiling run -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def one_slide(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    root = tmp_path_factory.mktemp("one_slide")
    write_synthetic_slide(root / "S-1.tif", "UD", width=1024, height=1024, pool_size=2, downsamples=(1, 4), seed=4,
                          blur=False)
    (root / "labels.csv").write_text("slide_id,label\nS-1,UD\n")
    return root


def _tile(root: Path, out: Path, *overrides: str):
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = load_config(None, ["slides.sampling.max_tiles_per_slide=2", "slides.tile_size=64",
                             "data.build.image_size=32", "data.build.val_fraction=0", "slides.qc_pictures=false",
                             *overrides])
    return tile_slides(cfg.slides, cfg.data.build, root, root / "labels.csv", out, cfg.data.classes, progress=False)


def test_the_manifest_records_the_tiling_options_but_not_how_the_job_ran(one_slide, tmp_path):
    """Workers, Ray address, mask folder, tracking and QC pictures change how a job runs, not its tiles: they stay
    out of the provenance (else the same tiles under another worker count would make another shard set)."""
    import json

    report = _tile(one_slide, tmp_path / "out", "slides.workers=3")
    assert report.ok
    prov = json.loads((tmp_path / "out" / "manifest.json").read_text())["provenance"]
    assert prov["tool"] == "mmlnb-dist slides tile" and prov["stain_target"] == "none"
    assert prov["slides"]["tile_size"] == 64 and prov["slides"]["sampling"]["max_tiles_per_slide"] == 2
    assert not {"workers", "ray_address", "mask_dir", "log_to_tracking", "qc_pictures"} & set(prov["slides"])
    assert prov["slide_files"] == {"S-1": "S-1.tif"}


def test_a_resumed_slides_warnings_are_logged_again(one_slide, tmp_path, caplog):
    """The shards a rerun writes hold the resumed slide's tiles, made as its warning says: the warning is logged on
    every run, not only the one that tiled it."""
    import logging

    for run in ("first", "resumed"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mmlnb_dist.slides.tiler"):
            report = _tile(one_slide, tmp_path / "out", "slides.mpp=0.25")
        assert report.ok and bool(report.results[0].get("resumed")) == (run == "resumed")
        assert any("slide S-1 (S-1.tif)" in m and "finer than the scan" in m for m in caplog.messages), (run,
                                                                                                       caplog.messages)


def test_no_stain_target_anywhere_stops_before_tiling(slides, no_tiatoolbox, tmp_path):
    from mmlnb_dist.slides.inputs import TilingInputError

    (tmp_path / "labels.csv").write_text("slide_id,label\nA-glass,UD\n")
    (tmp_path / "wsi").mkdir()
    (tmp_path / "wsi" / "A-glass.tif").symlink_to(slides / "A-glass.tif")
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = load_config(None, ["slides.stain.method=macenko"])
    with pytest.raises(TilingInputError, match="no stain target"):
        tile_slides(cfg.slides, cfg.data.build, tmp_path / "wsi", tmp_path / "labels.csv", tmp_path / "out",
                    cfg.data.classes, progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.work" / "slides").exists()


def test_the_manifest_names_only_the_slides_whose_tiles_it_holds(one_slide, slides, tmp_path):
    """A slide with no tissue is a problem of the run; it is not among the manifest's `slide_files`."""
    import json

    wsi = tmp_path / "wsi"
    wsi.mkdir()
    (wsi / "A-glass.tif").symlink_to(slides / "A-glass.tif")
    (wsi / "S-1.tif").symlink_to(one_slide / "S-1.tif")
    (wsi / "labels.csv").write_text("slide_id,label\nA-glass,UD\nS-1,UD\n")
    report = _tile(wsi, tmp_path / "out")
    assert [(r["slide_id"], r["status"]) for r in report.problems] == [("A-glass", "no_tissue")]
    prov = json.loads((tmp_path / "out" / "manifest.json").read_text())["provenance"]
    assert prov["slide_files"] == {"S-1": "S-1.tif"}
