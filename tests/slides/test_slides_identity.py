"""Per-slide resume in `slides tile` knows a slide by more than its name and size: an uncompressed TIFF replaced by
another slide of the same dimensions (same byte size) was "resumed" with the old slide's tiles, and for a MIRAX
slide only the small `.mrxs` index was looked at, never the data folder beside it."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mmlnb_dist.config import load_config

SMALL = ["slides.sampling.max_tiles_per_slide=2", "data.build.image_size=32", "slides.qc_pictures=false",
         "data.build.val_fraction=0"]


def _uncompressed_copy(src: Path, dst: Path) -> None:
    """The synthetic (JPEG-tiled) slide `src` as an uncompressed tiled TIFF: its size depends on the dimensions
    only, so two different slides have the same byte size."""
    import tifffile

    with tifffile.TiffFile(src) as tif:
        levels = [page.asarray() for page in tif.pages]
    with tifffile.TiffWriter(dst, bigtiff=True) as tw:
        for i, img in enumerate(levels):
            ds = levels[0].shape[1] // img.shape[1]
            tw.write(img, tile=(256, 256), photometric="rgb", compression=None, subfiletype=0 if i == 0 else 1,
                     resolution=(1e4 / (0.5 * ds), 1e4 / (0.5 * ds)), resolutionunit="CENTIMETER", metadata=None)


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """Two different slides in uncompressed TIFFs of one byte size."""
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    root = tmp_path_factory.mktemp("twins")
    for k in range(2):
        write_synthetic_slide(root / f"src{k}.tif", "UD", width=1024, height=1024, pool_size=3, downsamples=(1, 4),
                              seed=k)
        _uncompressed_copy(root / f"src{k}.tif", root / f"twin{k}.tif")
    assert (root / "twin0.tif").stat().st_size == (root / "twin1.tif").stat().st_size
    return root


def _tile(folder: Path, out: Path):
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = load_config(None, SMALL)
    return tile_slides(cfg.slides, cfg.data.build, folder, folder / "labels.csv", out, cfg.data.classes,
                       progress=False)


def test_a_slide_replaced_by_one_of_the_same_size_and_time_is_tiled_again(twins, tmp_path):
    folder = tmp_path / "wsi"
    folder.mkdir()
    slide = folder / "S1.tif"
    slide.write_bytes((twins / "twin0.tif").read_bytes())
    (folder / "labels.csv").write_text("slide_id,label\nS1,UD\n")
    first = _tile(folder, tmp_path / "out")
    assert first.ok and first.results[0]["kept"] == 2
    st = slide.stat()
    slide.write_bytes((twins / "twin1.tif").read_bytes())  # another slide, same size ...
    os.utime(slide, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and time (a copy that keeps times)
    second = _tile(folder, tmp_path / "out")
    assert not second.results[0].get("resumed")
    assert second.results[0]["fingerprint"] != first.results[0]["fingerprint"]
    third = _tile(folder, tmp_path / "out")
    assert third.results[0].get("resumed")  # an unchanged slide still resumes


def _fingerprint(path: Path) -> str:
    from mmlnb_dist.slides.slide_task import fingerprint

    return fingerprint(load_config(None, SMALL).slides, path, None, None, None)


def test_a_touched_slide_is_not_resumed(twins, tmp_path):
    slide = tmp_path / "S1.tif"
    slide.write_bytes((twins / "twin0.tif").read_bytes())
    before = _fingerprint(slide)
    st = slide.stat()
    os.utime(slide, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert _fingerprint(slide) != before


def test_a_changed_file_in_a_mirax_data_folder_changes_the_slide_fingerprint(tmp_path):
    slide = tmp_path / "case1.mrxs"
    slide.write_bytes(b"MIRAX index " * 10)
    data = tmp_path / "case1"
    data.mkdir()
    (data / "Slidedat.ini").write_text("[GENERAL]\nSLIDE_ID=1\n")
    (data / "Data0000.dat").write_bytes(np.zeros(5000, np.uint8).tobytes())
    before = _fingerprint(slide)
    (data / "Data0000.dat").write_bytes(np.ones(6000, np.uint8).tobytes())  # rescanned: new pixels
    after = _fingerprint(slide)
    assert after != before
    (data / "Data0001.dat").write_bytes(b"x")  # a data file added
    assert _fingerprint(slide) != after


def test_companion_files_of_the_multi_file_formats(tmp_path):
    from mmlnb_dist.slides.identity import companion_files

    (tmp_path / "a.vms").write_text("[Virtual Microscope Specimen]\nImageFile=a.jpg\nImageFile(1,0)=a_1_0.jpg\n"
                                    "MapFile=a_map.jpg\nOptimisationFile=a.opt\nNoLayers=1\n")
    assert [p.name for p in companion_files(tmp_path / "a.vms")] == ["a.jpg", "a.opt", "a_1_0.jpg", "a_map.jpg"]
    for name in ("s1.dcm", "s2.dcm", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in companion_files(tmp_path / "s1.dcm")] == ["s2.dcm"]
    assert companion_files(tmp_path / "notes.txt") == []


def test_an_unchanged_slide_is_hashed_once_per_process(tmp_path, monkeypatch):
    """`pipeline --slides` asks for each slide's identity twice (its tile-stage plan, then the tiler's resume
    fingerprint): the first and last MiB are read once; a rewritten file is read again."""
    from mmlnb_dist.slides import identity

    reads = []
    real = identity._hash_edges
    monkeypatch.setattr(identity, "_hash_edges", lambda path, size: reads.append(path) or real(path, size))
    slide = tmp_path / "S1.tif"
    slide.write_bytes(b"a" * 3000)
    first = identity.slide_identity(slide)
    assert identity.slide_identity(slide) == first
    assert len(reads) == 1
    slide.write_bytes(b"b" * 4000)  # rewritten: size and time change
    rewritten = identity.slide_identity(slide)
    assert rewritten != first
    assert len(reads) == 2
    st = slide.stat()
    slide.write_bytes(b"c" * 4000)  # same size ...
    os.utime(slide, ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and time: only the change time tells
    assert identity.slide_identity(slide) != rewritten
    assert len(reads) == 3
