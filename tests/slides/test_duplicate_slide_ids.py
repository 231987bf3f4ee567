"""Two slide files are never one slide. Slides sharing an id (one stem in two site folders of a multi-site cohort,
`S1.tif` beside `S1.svs`) used to overwrite each other in the slide list: `slides tile` tiled one of them, said
"N tiles from 2 slide(s)" for 4 slide files and exited 0. Ids that differ but make the same file key (`case-é`,
`case-ü`) failed only after every slide was tiled, with a bare "duplicate key" list."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlnb_dist.cli import main

SMALL = ["slides.sampling.max_tiles_per_slide=2", "data.build.image_size=32", "slides.qc_pictures=false"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Two sites naming their slides alike: siteA/S001.tif, siteB/S001.tif, siteA/S002.tif, siteB/S002.tif."""
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path_factory.mktemp("cohort")
    for k, (site, sid, label) in enumerate([("siteA", "S001", "UD"), ("siteB", "S001", "UD"),
                                            ("siteA", "S002", "PD"), ("siteB", "S002", "PD")]):
        (folder / site).mkdir(exist_ok=True)
        write_synthetic_slide(folder / site / f"{sid}.tif", label, width=1024, height=1024, pool_size=3,
                              downsamples=(1, 4), seed=k)
    return folder


def _tile(slides: Path, labels: Path, out: Path, capsys):
    code = main(["slides", "tile", "--slides", str(slides), "--labels", str(labels), "--out", str(out), "--quiet",
                 *SMALL])
    return code, capsys.readouterr().err


def test_two_slides_listed_under_one_id_are_refused_before_tiling(cohort, tmp_path, capsys):
    listing = tmp_path / "slides.csv"
    listing.write_text("path\n" + "".join(f"{cohort}/{s}/{i}.tif\n" for i in ("S001", "S002")
                                          for s in ("siteA", "siteB")))
    labels = tmp_path / "labels.csv"
    labels.write_text("slide_id,label\nS001,UD\nS002,PD\n")
    out = tmp_path / "out"
    code, err = _tile(listing, labels, out, capsys)
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert "'S001'" in last and f"{cohort}/siteA/S001.tif" in last and f"{cohort}/siteB/S001.tif" in last, last
    assert "slide_id" in last and str(listing) in last, last  # the remedy: a slide_id column in that CSV
    assert not out.exists() and not (tmp_path / "out.work").exists()  # nothing tiled
    # The remedy the message names: distinct ids in a slide_id column; all four slides then land.
    listing.write_text("path,slide_id\n" + "".join(f"{cohort}/{s}/{i}.tif,{s}-{i}\n" for i in ("S001", "S002")
                                                   for s in ("siteA", "siteB")))
    labels.write_text("slide_id,label\nsiteA-S001,UD\nsiteB-S001,UD\nsiteA-S002,PD\nsiteB-S002,PD\n")
    code, err = _tile(listing, labels, out, capsys)
    assert code == 0, err
    slides = json.loads((out / "manifest.json").read_text())["provenance"]["slide_files"]
    assert sorted(slides) == ["siteA-S001", "siteA-S002", "siteB-S001", "siteB-S002"]


def test_one_file_listed_twice_is_one_slide(tmp_path):
    from mmlnb_dist.slides.inputs import find_slides

    (tmp_path / "a.tif").write_bytes(b"")
    listing = tmp_path / "slides.csv"
    listing.write_text(f"path\na.tif\n{tmp_path}/a.tif\n")
    assert find_slides(listing) == {"a": tmp_path / "a.tif"}


def test_a_slide_id_column_naming_one_id_twice_is_refused(tmp_path):
    from mmlnb_dist.slides.inputs import TilingInputError, find_slides

    for name in ("a.tif", "b.tif"):
        (tmp_path / name).write_bytes(b"")
    listing = tmp_path / "slides.csv"
    listing.write_text("path,slide_id\na.tif,case-1\nb.tif,case-1\n")
    with pytest.raises(TilingInputError) as err:
        find_slides(listing)
    text = str(err.value)
    assert "'case-1'" in text and "rows 2 and 3" in text and "a.tif" in text and "b.tif" in text, text


def test_one_stem_with_two_extensions_in_a_folder_is_refused(tmp_path):
    from mmlnb_dist.slides.inputs import TilingInputError, find_slides

    for name in ("S1.tif", "S1.svs", "S2.tif"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(TilingInputError) as err:
        find_slides(tmp_path)
    text = str(err.value)
    assert "'S1'" in text and "S1.svs" in text and "S1.tif" in text and "slide_id" in text, text


def test_slide_ids_that_make_one_file_key_are_refused_before_tiling(tmp_path, capsys):
    from mmlnb_dist.slides.synthetic_slides import write_synthetic_slide

    folder = tmp_path / "wsi"
    folder.mkdir()
    for k, (sid, label) in enumerate([("case-é", "UD"), ("case-ü", "PD"), ("case-0", "D")]):
        write_synthetic_slide(folder / f"{sid}.tif", label, width=1024, height=1024, pool_size=3,
                              downsamples=(1, 4), seed=k)
    labels = folder / "labels.csv"
    labels.write_text("slide_id,label\ncase-é,UD\ncase-ü,PD\ncase-0,D\n", encoding="utf-8")
    out = tmp_path / "out"
    code, err = _tile(folder, labels, out, capsys)
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert "'case-é'" in last and "'case-ü'" in last and "'case--'" in last, last
    assert not out.exists() and not (tmp_path / "out.work").exists()  # nothing tiled


def test_one_file_under_two_ids_is_refused_and_ids_are_read_as_labels_are(tmp_path):
    """One slide file listed under two ids was tiled twice, as two slides: its tiles could land in train and val.
    And a slides CSV's ` S1` (a space after the comma) never matched the label `S1`, which the labels CSV trims."""
    from mmlnb_dist.slides.inputs import TilingInputError, find_slides

    (tmp_path / "sub").mkdir()
    (tmp_path / "a.svs").write_bytes(b"")
    (tmp_path / "sub" / "b.svs").write_bytes(b"")
    listing = tmp_path / "slides.csv"
    listing.write_text("path,slide_id\na.svs,S1\nsub/b.svs,S2\na.svs,S3\n")
    with pytest.raises(TilingInputError, match=r"a\.svs is listed under two slide ids, 'S1' \(row 2\) and 'S3' "
                                               r"\(row 4\)"):
        find_slides(listing)
    listing.write_text("path,slide_id\n a.svs , S1 \nsub\\b.svs,S2\n")  # (and a path written on Windows)
    assert find_slides(listing) == {"S1": tmp_path / "a.svs", "S2": tmp_path / "sub" / "b.svs"}
