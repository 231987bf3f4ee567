"""A slide without read permission is that slide's failure: its identity (for the resume fingerprint and the
pipeline's tile-stage plan) used to open the file unguarded, so PermissionError stopped the whole run."""
from __future__ import annotations

import builtins
import os
from pathlib import Path

import pytest

from mmlnb_dist.config import load_config

SMALL = ["slides.sampling.max_tiles_per_slide=2", "data.build.image_size=32", "slides.qc_pictures=false",
         "data.build.val_fraction=0"]


@pytest.fixture
def folder(tmp_path):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    wsi = tmp_path / "wsi"
    wsi.mkdir()
    for k, label in enumerate(("UD", "PD")):
        write_synthetic_slide(wsi / f"S{k}.tif", label, width=1024, height=1024, pool_size=3, downsamples=(1, 4),
                              seed=k)
    (wsi / "labels.csv").write_text("slide_id,label\nS0,UD\nS1,PD\n")
    return wsi


def _deny(monkeypatch, denied: Path) -> None:
    """No read permission on `denied`: chmod 000, or, as root (whom chmod does not stop), every open refused."""
    if os.geteuid() != 0:
        denied.chmod(0)
        return
    import openslide

    real_open, real_slide = builtins.open, openslide.OpenSlide

    def refuse(path) -> None:
        if Path(str(path)).resolve() == denied.resolve():
            raise PermissionError(13, "Permission denied", str(path))

    def fake_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            refuse(file)
        return real_open(file, *args, **kwargs)

    def fake_slide(filename, *args, **kwargs):
        refuse(filename)
        return real_slide(filename, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(openslide, "OpenSlide", fake_slide)


def test_file_identity_of_an_unreadable_file(tmp_path, monkeypatch):
    from mmlnb_dist.slides.identity import file_identity

    f = tmp_path / "S.tif"
    f.write_bytes(b"x" * 100)
    _deny(monkeypatch, f)
    try:
        assert file_identity(f).endswith("|unreadable")
    finally:
        f.chmod(0o644)


def test_an_unreadable_slide_fails_alone(folder, tmp_path, monkeypatch):
    from mmlnb_dist.slides.identity import tiling_inputs_identity
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = load_config(None, SMALL)
    denied = folder / "S1.tif"
    _deny(monkeypatch, denied)
    try:
        assert set(tiling_inputs_identity(folder, cfg.slides)["slides"]) == {"S0", "S1"}  # the pipeline's plan
        report = tile_slides(cfg.slides, cfg.data.build, folder, folder / "labels.csv", tmp_path / "out",
                             cfg.data.classes, progress=False)
    finally:
        denied.chmod(0o644)
    status = {r["slide_id"]: r for r in report.results}
    assert status["S0"]["status"] == "ok" and status["S0"]["kept"] == 2
    assert status["S1"]["status"] == "failed"
    assert "S1.tif" in status["S1"]["error"]
