"""The slide and mask paths `slides tile` hands to its workers are absolute: a Ray worker on an existing cluster
(`--ray-address`) runs in the cluster's working directory, not the driver's, so a relative `--slides wsi` or
`--mask-dir masks` named files that were not there. Ids and file names stay what they were (a slide linked
under another name keeps the link's name: the paths are made absolute, not resolved)."""
from __future__ import annotations

import os
from pathlib import Path

from mmlnb_dist.slides.inputs import find_slides, mask_path


def _project(root: Path) -> None:
    store = root / "store"
    store.mkdir()
    (store / "scan-0001.svs").write_bytes(b"slide")  # the file a link names by slide id
    wsi = root / "proj" / "wsi"
    wsi.mkdir(parents=True)
    (wsi / "A-1.svs").write_bytes(b"slide a")
    (wsi / "B.2.tif").write_bytes(b"slide b")
    (wsi / "C-3.svs").symlink_to(store / "scan-0001.svs")
    (root / "proj" / "slides.csv").write_text("path,slide_id\nwsi/A-1.svs,\nwsi/B.2.tif,b2\n../store/scan-0001.svs,C\n")
    (root / "proj" / "masks").mkdir()
    (root / "proj" / "masks" / "A-1.geojson").write_text("{}")
    (root / "proj" / "masks" / "B-2.geojson").write_text("{}")  # the name slides tile exports for id B.2


def test_slide_and_mask_paths_work_from_any_working_directory(tmp_path, monkeypatch):
    _project(tmp_path)
    monkeypatch.chdir(tmp_path / "proj")
    from_folder = find_slides(Path("wsi"))
    from_csv = find_slides(Path("slides.csv"))
    masks = {sid: mask_path(Path("masks"), sid) for sid in ("A-1", "B.2", "C-3")}
    monkeypatch.chdir(tmp_path)  # where a Ray worker might run: anywhere but the driver's folder
    assert sorted(from_folder) == ["A-1", "B.2", "C-3"] and sorted(from_csv) == ["A-1", "C", "b2"]
    for path in [*from_folder.values(), *from_csv.values(), masks["A-1"], masks["B.2"]]:
        assert path.is_absolute() and path.is_file(), path
    assert masks["C-3"] is None
    # names as given, links not followed: tile sources, result records and fingerprints use the file name
    assert {sid: p.name for sid, p in from_folder.items()} == {"A-1": "A-1.svs", "B.2": "B.2.tif", "C-3": "C-3.svs"}
    assert from_folder["C-3"] == tmp_path / "proj" / "wsi" / "C-3.svs"
    assert masks["B.2"].name == "B-2.geojson"
    assert os.path.samefile(from_csv["C"], from_folder["C-3"])
