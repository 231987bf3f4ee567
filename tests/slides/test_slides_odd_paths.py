"""`slides tile` given odd paths stops at once with a message naming the argument, not a traceback: `--out` that
is a file, `--slides` that is one slide file, a label or slide-list CSV that is not UTF-8 text (a slide, a
spreadsheet saved in a legacy encoding); and a label row whose slide is there in a format `slides tile` does not
read says so rather than "no slide file"."""
from __future__ import annotations

from pathlib import Path

import pytest

from mmlnb_dist.config import load_config
from mmlnb_dist.slides.inputs import TilingInputError, find_slides, match_inputs, read_labels


def _tile(slides: Path, labels: Path, out: Path):
    from mmlnb_dist.slides.tiler import tile_slides

    cfg = load_config(None, [])
    return tile_slides(cfg.slides, cfg.data.build, slides, labels, out, cfg.data.classes, progress=False)


def test_an_out_that_is_a_file_is_refused_and_left_alone(tmp_path):
    (tmp_path / "wsi").mkdir()
    (tmp_path / "wsi" / "S1.svs").write_bytes(b"not read")
    (tmp_path / "labels.csv").write_text("slide_id,label\nS1,UD\n")
    (tmp_path / "out").write_text("my notes")
    with pytest.raises(TilingInputError, match=r"--out .*out: it is a file, not a shard set folder"):
        _tile(tmp_path / "wsi", tmp_path / "labels.csv", tmp_path / "out")
    assert (tmp_path / "out").read_text() == "my notes" and not (tmp_path / "out.work").exists()


def test_slides_given_as_one_slide_file_names_what_it_takes(tmp_path):
    slide = tmp_path / "S 1.svs"
    slide.write_bytes(b"II*\x00\xff\xfe\x00binary")
    with pytest.raises(TilingInputError, match=r"--slides .*S 1\.svs is a slide file.*folder.*'path' column"):
        find_slides(slide)


@pytest.mark.parametrize("which", ["labels", "slide list"])
def test_a_csv_that_is_not_utf8_is_refused_with_its_name(tmp_path, which):
    bad = tmp_path / "sheet.csv"
    bad.write_bytes("slide_id,label,path\ncase \xe9,UD,x.svs\n".encode("latin-1"))
    with pytest.raises(TilingInputError, match=r"sheet\.csv.*not UTF-8.*byte 0xe9"):
        read_labels(bad) if which == "labels" else find_slides(bad)


def test_a_labelled_slide_in_an_unread_format_is_named_as_such(tmp_path):
    (tmp_path / "A.svs").write_bytes(b"a")
    (tmp_path / "B.png").write_bytes(b"b")  # an image format, not a slide format
    usable, problems = match_inputs(find_slides(tmp_path), {"A": "UD", "B": "PD", "C": "D"}, ["UD", "PD", "D"],
                                    folder=tmp_path)
    assert list(usable) == ["A"]
    errors = {p["slide_id"]: (p["status"], p["error"]) for p in problems}
    assert errors["C"] == ("missing_slide", "named in the label file, no slide file")
    status, error = errors["B"]
    assert status == "missing_slide" and "B.png is there" in error and ".png is not a slide format" in error


def test_a_label_in_another_case_is_named_with_the_class_it_means(tmp_path):
    (tmp_path / "A.svs").write_bytes(b"a")
    (tmp_path / "B.svs").write_bytes(b"b")
    _, problems = match_inputs(find_slides(tmp_path), {"A": "ud", "B": "XX"}, ["UD", "PD", "D"])
    errors = {p["slide_id"]: p["error"] for p in problems}
    assert errors["A"].endswith("did you mean 'UD'? labels are matched exactly, case included")
    assert errors["B"] == "label 'XX' is not one of ['UD', 'PD', 'D']"


@pytest.mark.parametrize("where", ["out/qc/masks", "out.work/qc/masks"])
def test_a_mask_dir_inside_what_the_run_replaces_is_refused_and_kept(tmp_path, where):
    from mmlnb_dist.slides.tiler import tile_slides

    (tmp_path / "wsi").mkdir()
    (tmp_path / "wsi" / "S1.svs").write_bytes(b"not read")
    (tmp_path / "labels.csv").write_text("slide_id,label\nS1,UD\n")
    masks = tmp_path / where
    masks.mkdir(parents=True)
    (masks / "S1.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    cfg = load_config(None, [f"slides.mask_dir={masks}"])
    with pytest.raises(TilingInputError, match=r"--mask-dir .* is inside .*which this run replaces"):
        tile_slides(cfg.slides, cfg.data.build, tmp_path / "wsi", tmp_path / "labels.csv", tmp_path / "out",
                    cfg.data.classes, progress=False)
    assert (masks / "S1.geojson").is_file()
