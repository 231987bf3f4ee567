"""A rerun of `slides tile` into the same output reports the QC files of this run's slides only, as this run's
settings ask: none of a slide dropped from the set, of a slide that now fails, or of an option now off; and
pictures asked for on a rerun are made for the slides it resumes."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mmlnb_dist.config import load_config

SLIDES = (("UD-0", "UD"), ("PD-0", "PD"), ("D-0", "D"))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("qc_wsi")
    for i, (sid, label) in enumerate(SLIDES):
        write_synthetic_slide(folder / f"{sid}.tif", label, width=1024, height=1024, seed=i, pool_size=4,
                              downsamples=(1, 4))
    return folder


@pytest.fixture
def wsi(source, tmp_path):
    folder = tmp_path / "wsi"
    shutil.copytree(source, folder)
    _labels(folder, SLIDES)
    return folder


def _labels(folder: Path, slides) -> None:
    (folder / "labels.csv").write_text("slide_id,label\n" + "".join(f"{s},{lab}\n" for s, lab in slides))


def _tile(wsi: Path, out: Path, *overrides: str):
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = load_config(None, ["slides.sampling.max_tiles_per_slide=4", "data.build.val_fraction=0.34",
                             "data.build.image_size=64", "slides.tile_size=128", *overrides])
    return tile_slides(cfg.slides, cfg.data.build, wsi, wsi / "labels.csv", out, cfg.data.classes, progress=False)


def _qc_files(report) -> set:
    return {str(p.relative_to(report.qc_dir)) for p in report.qc_dir.rglob("*") if p.is_file()}


def _expected(slide_ids, pictures: bool = True) -> set:
    kinds = (("masks", ".geojson"), ("pictures", ".png")) if pictures else (("masks", ".geojson"),)
    return {"summary.csv"} | {f"{kind}/{sid}{suffix}" for sid in slide_ids for kind, suffix in kinds}


def test_pictures_asked_for_on_a_rerun_are_made_for_the_resumed_slides(wsi, tmp_path):
    first = _tile(wsi, tmp_path / "out", "slides.qc_pictures=false")
    assert _qc_files(first) == _expected(["UD-0", "PD-0", "D-0"], pictures=False)
    again = _tile(wsi, tmp_path / "out", "slides.qc_pictures=true")
    assert _qc_files(again) == _expected(["UD-0", "PD-0", "D-0"])
    assert again.manifest == first.manifest  # re-tiled for the pictures: the same shards


def test_pictures_turned_off_on_a_rerun_are_not_copied(wsi, tmp_path):
    _tile(wsi, tmp_path / "out", "slides.qc_pictures=true")
    again = _tile(wsi, tmp_path / "out", "slides.qc_pictures=false")
    assert _qc_files(again) == _expected(["UD-0", "PD-0", "D-0"], pictures=False)


def test_a_slide_dropped_from_the_set_leaves_no_qc_files_in_the_staging_qc(wsi, tmp_path):
    strict = "slides.qc.min_blur=1e12"  # every tile fails QC: no shards, the QC files go to <out>.work/qc
    first = _tile(wsi, tmp_path / "out", strict)
    assert first.manifest is None and _qc_files(first) == _expected(["UD-0", "PD-0", "D-0"])
    (wsi / "D-0.tif").unlink()
    _labels(wsi, SLIDES[:2])
    again = _tile(wsi, tmp_path / "out", strict)
    assert again.qc_dir == first.qc_dir
    assert _qc_files(again) == _expected(["UD-0", "PD-0"])


def test_a_slide_that_now_fails_has_no_qc_files_of_its_earlier_run(wsi, tmp_path):
    _tile(wsi, tmp_path / "out")
    slide = wsi / "PD-0.tif"
    slide.write_bytes(slide.read_bytes()[:5000])  # truncated: unreadable now
    again = _tile(wsi, tmp_path / "out")
    assert {r["slide_id"]: r["status"] for r in again.results}["PD-0"] == "failed"
    assert _qc_files(again) == _expected(["UD-0", "D-0"])


def test_a_slide_now_unlabelled_has_no_qc_files_of_its_earlier_run(wsi, tmp_path):
    _tile(wsi, tmp_path / "out")
    _labels(wsi, SLIDES[:2])  # D-0's file stays, its label goes
    again = _tile(wsi, tmp_path / "out")
    assert {r["slide_id"]: r["status"] for r in again.results}["D-0"] == "unlabelled"
    assert _qc_files(again) == _expected(["UD-0", "PD-0"])
