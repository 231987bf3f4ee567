"""`--mask-dir` matched a corrected mask only under the suffix `.geojson` in lower case: `S1.GEOJSON` or
`S1.GeoJSON` (Windows and some QuPath scripts write these) was not the slide's mask, so the slide was tiled on its
automatically detected tissue. The suffix now matches in any case; a mask that matches no slide is still named."""
from __future__ import annotations

import logging

import pytest

from mmlnb_dist.slides.inputs import TilingInputError, check_mask_dir, mask_path

SQUARE = '{"type": "FeatureCollection", "features": []}'


@pytest.mark.parametrize("name", ["S1.GEOJSON", "S1.GeoJSON", "S1.svs.GeoJson"])
def test_a_mask_with_the_suffix_in_another_case_is_the_slides(tmp_path, caplog, name):
    (tmp_path / name).write_text(SQUARE)
    assert mask_path(tmp_path, "S1", "S1.svs") == (tmp_path / name).absolute()
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.slides.inputs"):
        check_mask_dir(tmp_path, ["S1"], {"S1": "S1.svs"})
    assert "match no slide" not in caplog.text and "none of the" not in caplog.text, caplog.text


def test_a_mask_of_no_slide_is_named_whatever_its_suffix_case(tmp_path, caplog):
    (tmp_path / "S1.GeoJSON").write_text(SQUARE)
    (tmp_path / "S9.GEOJSON").write_text(SQUARE)
    with caplog.at_level(logging.WARNING, logger="mmlnb_dist.slides.inputs"):
        check_mask_dir(tmp_path, ["S1"], {"S1": "S1.svs"})
    assert "1 mask file(s) match no slide" in caplog.text and "S9.GEOJSON" in caplog.text, caplog.text
    assert "S1.GeoJSON" not in caplog.text


def test_two_different_masks_in_two_suffix_cases_are_refused(tmp_path):
    (tmp_path / "S1.geojson").write_text(SQUARE)
    (tmp_path / "S1.GEOJSON").write_text(SQUARE.replace("[]", "[ ]"))
    if len(list(tmp_path.iterdir())) < 2:
        pytest.skip("case-insensitive file system: one file")
    with pytest.raises(TilingInputError, match="two different masks"):
        check_mask_dir(tmp_path, ["S1"])


def test_no_mask_is_none(tmp_path):
    (tmp_path / "S2.GEOJSON").write_text(SQUARE)
    assert mask_path(tmp_path, "S1", "S1.svs") is None
    assert mask_path(tmp_path / "missing", "S1") is None
