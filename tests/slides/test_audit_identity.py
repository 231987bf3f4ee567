"""Audit of slide identity (`slides.identity`), what a `slides tile` resume and `pipeline --slides` trust: every
file of a multi-file slide counts (MIRAX sub-folders, `.vmu` indexes, `.DCM` series in any case), a companion
rewritten at the same size still changes it, a missing or unreadable file is named, and the tiling-inputs identity
follows the slides with their companions, the `.geojson` masks and the stain target file."""
from __future__ import annotations

import os
from pathlib import Path

from mmlnb_dist.config import load_config
from mmlnb_dist.slides import identity
from mmlnb_dist.slides.identity import companion_files, file_identity, slide_identity, tiling_inputs_identity


def _mirax(tmp_path: Path) -> Path:
    slide = tmp_path / "m.mrxs"
    slide.write_bytes(b"index")
    (tmp_path / "m" / "sub").mkdir(parents=True)
    (tmp_path / "m" / "Index.dat").write_bytes(b"index data")
    (tmp_path / "m" / "sub" / "Data0001.dat").write_bytes(b"pixels" * 100)
    return slide


def _keep_times(path: Path, write) -> None:
    st = path.stat()
    write()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_mirax_file_in_a_sub_folder_counts_and_so_does_where_it_lies(tmp_path):
    slide = _mirax(tmp_path)
    assert [p.relative_to(tmp_path / "m").as_posix() for p in companion_files(slide)] == ["Index.dat",
                                                                                        "sub/Data0001.dat"]
    before = slide_identity(slide)
    data = tmp_path / "m" / "sub" / "Data0001.dat"
    _keep_times(data, lambda: data.write_bytes(b"pixels" * 50))
    assert slide_identity(slide) != before
    # the same file (name, size, time) moved to another sub-folder is another slide layout
    moved = slide_identity(slide)
    (tmp_path / "m" / "other").mkdir()
    os.replace(data, tmp_path / "m" / "other" / "Data0001.dat")
    assert slide_identity(slide) != moved


def test_a_companion_rewritten_at_the_same_size_changes_the_identity(tmp_path):
    slide = _mirax(tmp_path)
    before = slide_identity(slide)
    data = tmp_path / "m" / "Index.dat"
    st = data.stat()
    data.write_bytes(b"INDEX DATA")  # same size, a new modification time
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert slide_identity(slide) != before


def test_vmu_indexes_and_upper_case_suffixes_have_their_companions(tmp_path):
    (tmp_path / "a.VMU").write_text("[Uncompressed Virtual Microscope Specimen]\nImageFile=a.raw\n")
    assert [p.name for p in companion_files(tmp_path / "a.VMU")] == ["a.raw"]
    for name in ("S1.DCM", "S2.dcm", "S3.DCM", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in companion_files(tmp_path / "S1.DCM")] == ["S2.dcm", "S3.DCM"]
    assert companion_files(tmp_path / "Q.MRXS") == []  # no data folder: no companions (OpenSlide says why)


def test_a_missing_or_unreadable_file_is_named_and_an_unreadable_one_is_hashed_once_readable(tmp_path, monkeypatch):
    assert file_identity(tmp_path / "gone.svs") == "gone.svs|missing"
    path = tmp_path / "locked.svs"
    path.write_bytes(b"slide")
    st = path.stat()
    real = identity._hash_edges

    def denied(p, size):
        raise PermissionError(13, "Permission denied", p)

    monkeypatch.setattr(identity, "_hash_edges", denied)
    assert file_identity(path) == f"locked.svs|{st.st_size}|{st.st_mtime_ns}|unreadable"
    monkeypatch.setattr(identity, "_hash_edges", real)
    assert file_identity(path).endswith("|" + real(str(path), st.st_size))  # the failure was not cached


def _cfg(**slides):
    overrides = [f"slides.{k}={v}" for k, v in slides.items()]
    return load_config(None, overrides).slides


def test_tiling_inputs_identity_follows_companions_masks_and_the_stain_target(tmp_path):
    folder = tmp_path / "slides"
    folder.mkdir()
    slide = _mirax(folder)
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "m.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    (masks / "notes.txt").write_text("not a mask")
    target = tmp_path / "target.png"
    target.write_bytes(b"png v1")
    cfg = _cfg(mask_dir=masks, **{"stain.method": "macenko", "stain.target": target})
    first = tiling_inputs_identity(folder, cfg)
    assert set(first["slides"]) == {"m"} and first["slides"]["m"] == slide_identity(slide)
    assert first["masks"] == [file_identity(masks / "m.geojson")]  # notes.txt is no mask
    assert first["stain_target"] == file_identity(target)

    data = folder / "m" / "sub" / "Data0001.dat"
    _keep_times(data, lambda: data.write_bytes(b"p"))
    second = tiling_inputs_identity(folder, cfg)
    assert second["slides"] != first["slides"]  # a MIRAX data file changed, the index did not

    mask = masks / "m.geojson"
    _keep_times(mask, lambda: mask.write_text('{"type": "FeatureCollection", "features": [ ]}'))
    third = tiling_inputs_identity(folder, cfg)
    assert third["masks"] != second["masks"]

    _keep_times(target, lambda: target.write_bytes(b"png v2"))
    assert tiling_inputs_identity(folder, cfg)["stain_target"] != third["stain_target"]
    assert tiling_inputs_identity(folder, _cfg())["masks"] == [] and _cfg().stain.target is None


def test_a_slide_list_that_cannot_be_read_contributes_no_slides(tmp_path):
    listing = tmp_path / "slides.csv"
    listing.write_text("file\nS1.svs\n")  # no 'path' column: tiling says so, the plan does not raise
    assert tiling_inputs_identity(listing, _cfg())["slides"] == {}
