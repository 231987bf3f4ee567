"""A patches CSV written by pandas from a frame with missing cells (`df.astype(str).to_csv`, or `na_rep="nan"`)
holds `nan` / `None` where a slide id or description is missing. Read as text, every row without a slide became
one slide named `nan` (the grouped split kept them all in one split) and a patch was built with the description
`nan` (the text branch trained on the word). They now read as no slide and no description, as the multi-label
CSV reads them."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from mmlnb_dist.data.collect import read_patch_csv


def _csv(tmp_path: Path, rows) -> Path:
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (8, 8), (200, 100, 150)).save(tmp_path / name)
    path = tmp_path / "patches.csv"
    path.write_text("path,label,slide_id,description\n" + "".join(",".join(row) + "\n" for row in rows))
    return path


def test_nan_and_none_cells_are_no_slide_and_no_description(tmp_path):
    samples = read_patch_csv(_csv(tmp_path, [("a.png", "UD", "nan", "NaN"), ("b.png", "PD", "None", "<NA>"),
                                             ("c.png", "D", "slide-7", "round blue cells")]))
    by_file = {s.meta["file"]: s for s in samples}
    assert by_file["a.png"].slide_id is None and by_file["b.png"].slide_id is None
    assert by_file["a.png"].description is None and by_file["b.png"].description is None
    assert by_file["c.png"].slide_id == "slide-7" and by_file["c.png"].description == "round blue cells"


def test_a_slide_named_like_a_word_is_kept(tmp_path):
    samples = read_patch_csv(_csv(tmp_path, [("a.png", "UD", "nancy-01", "nanometre-scale nuclei")]))
    assert samples[0].slide_id == "nancy-01" and samples[0].description == "nanometre-scale nuclei"
