"""An implausible level-0 resolution is a slide problem, not a silent tiling at a wrong scale: a TIFF tagged 72 dpi
reads as 352.78 um/px (tiles of one pixel blown up to 256), anisotropic pixels were averaged, and asking for a
finer resolution than the scan upsampled without a word."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.slides.reader import SlideError, resolve_mpp


def _mpp(x=None, y=None, assume=None):
    props = {k: str(v) for k, v in (("openslide.mpp-x", x), ("openslide.mpp-y", y)) if v is not None}
    return resolve_mpp(props, assume)


def test_a_72_dpi_tag_is_refused_naming_the_value_and_the_remedy():
    with pytest.raises(SlideError, match=r"352\.78 um/px.*--assume-mpp"):
        _mpp(352.7777, 352.7777)
    with pytest.raises(SlideError, match=r"352\.78 um/px.*a TIFF tagged in dpi"):
        _mpp(352.7777, 352.7777)
    with pytest.raises(SlideError, match=r"0\.001 um/px") as too_fine:
        _mpp(0.001, 0.001)
    assert "dpi" not in str(too_fine.value)  # a dpi tag reads as a coarse value, never as one below the range


def test_assume_mpp_stands_in_for_an_implausible_tag():
    mpp, source, note = _mpp(352.7777, 352.7777, assume=0.5)
    assert (mpp, source) == (0.5, "assumed") and "352.78" in note


def test_anisotropic_pixels_are_refused_naming_both_values():
    with pytest.raises(SlideError, match=r"mpp-x 0\.25.*mpp-y 0\.5"):
        _mpp(0.25, 0.5)
    mpp, source, note = _mpp(0.25, 0.26)  # within 10%: scanner rounding, the mean is used
    assert mpp == pytest.approx(0.255) and source == "metadata" and note is None


def test_plausible_metadata_is_used_as_before():
    assert _mpp(0.2527, 0.2527)[:2] == (pytest.approx(0.2527), "metadata")
    assert _mpp(assume=0.5)[:2] == (0.5, "assumed")
    with pytest.raises(SlideError, match="--assume-mpp"):
        _mpp()


@pytest.fixture(scope="module")
def wsi(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("res")
    write_synthetic_slide(folder / "S20.tif", "UD", width=1024, height=1024, pool_size=3, downsamples=(1, 4))
    write_synthetic_slide(folder / "dpi72.tif", "PD", width=1024, height=1024, pool_size=3, downsamples=(1, 4),
                          mpp=1e4 / (72 / 2.54))
    (folder / "labels.csv").write_text("slide_id,label\nS20,UD\ndpi72,PD\n")
    return folder


def _tile(folder, out, *overrides):
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = load_config(None, ["slides.sampling.max_tiles_per_slide=2", "data.build.image_size=32",
                             "slides.qc_pictures=false", "data.build.val_fraction=0", *overrides])
    return tile_slides(cfg.slides, cfg.data.build, folder, folder / "labels.csv", out, cfg.data.classes,
                       progress=False)


def test_a_slide_tagged_72_dpi_is_a_failed_slide_and_the_rest_lands(wsi, tmp_path):
    report = _tile(wsi, tmp_path / "o")
    bad = {p["slide_id"]: p for p in report.problems}
    assert set(bad) == {"dpi72"} and bad["dpi72"]["status"] == "failed"
    assert "352.78" in bad["dpi72"]["error"] and "--assume-mpp" in bad["dpi72"]["error"]
    assert report.manifest is not None


def test_tiles_finer_than_the_scan_are_made_with_a_warning(wsi, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    report = _tile(wsi, tmp_path / "o", "slides.magnification=40", "slides.mpp=null")
    s20 = next(r for r in report.results if r["slide_id"] == "S20")
    assert s20["status"] == "ok" and s20["kept"] == 2  # made, as asked
    warned = [r.getMessage() for r in caplog.records if "S20" in r.getMessage()]
    assert any("0.25" in m and "0.5" in m and "upsampl" in m for m in warned), warned
